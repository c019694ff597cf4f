"""``taskdesk`` subcommands: a client of a running Taskdesk's HTTP API, for people and scripts.

``taskdesk list``, ``submit``, ``wait`` … are run in shell loops, so they must start quickly:
this package uses the standard library (a socket: see transport.py) and click, and from the rest of
Taskdesk only modules that are light and free of Qt (service/settings.py, service/paths.py,
service/token_file.py). It never imports PySide6, bottle, cheroot, jsonschema or the storage
backends (tests/test_cli.py checks it in a fresh interpreter). What a task is, and which
statuses exist, it learns from the API's JSON, as any other client does.

- client.py: HTTP requests, and turning every failure into one line (CliError);
- connection.py: which Taskdesk to talk to, and with which token;
- events.py: GET /events (Server-Sent Events) read on a thread, with a fallback to polling;
- waiting.py: waiting for tasks to end, following a task's log;
- task_data.py: ``key=value`` arguments typed by the action's JSON Schema;
- output.py: tables and colours for a terminal;
- commands.py: the click commands.
"""
