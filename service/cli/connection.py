"""Which Taskdesk a subcommand talks to, and with which token.

The address: ``--url``, else ``TASKDESK_URL``, else the host and port Taskdesk itself would
listen on with the same settings (``taskdesk --port 9000 list``, ``TASKDESK_PORT``, the actions
file's ``[settings]``; ``http://127.0.0.1:8080`` by default). The token, first found of:
the subcommand's ``--token``, the group's (``taskdesk --token T list``), ``TASKDESK_TOKEN``,
the actions file's ``[settings] token``, and the token file Taskdesk keeps beside its database
(service/token_file.py) — the default database's, or that of ``--db``/``TASKDESK_DB``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import click

from service.cli.client import Client, TokenNote
from service.settings import SETTINGS
from service.token_file import read_token, token_path

_SETTINGS = {s.name: s for s in SETTINGS}
# The settings that say where Taskdesk listens and which token it wants.
CONNECTION_SETTINGS = ("host", "port", "db", "token")
# Where a server listening on every address is reached from this machine.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def default_url(host: str, port: int) -> str:
    host = _ANY_ADDRESS.get(host, host)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name
    return f"http://{host}:{port}"


def connect(ctx: click.Context, url: str | None, token: str | None) -> Client:
    """The client a subcommand uses, from its own --url and --token and the group's settings."""
    values, sources = _connection_settings(ctx)
    if url is None:
        url = default_url(str(values["host"]), int(values["port"]))
    if token:
        return Client(url, TokenNote(token, "--token"))
    if values["token"]:
        return Client(url, TokenNote(str(values["token"]), sources["token"]))
    path = token_path(values["db"])
    try:
        found = read_token(path)
    except OSError as exc:  # not ours to read, say: the API will say whether it wants one
        return Client(url, TokenNote(None, "", f"the token file {path} could not be read: "
                                               f"{exc.strerror or exc}"))
    if found is not None:
        return Client(url, TokenNote(found, f"the token file {path}"))
    missing = "is empty" if path.exists() else "was not found"
    return Client(url, TokenNote(None, "", f"the token file {path} {missing}"))


def _connection_settings(ctx: click.Context) -> tuple[dict[str, Any], dict[str, str]]:
    """host, port, db and token as Taskdesk would have them, and where each came from."""
    root = ctx.find_root()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    unset: list[str] = []
    for name in CONNECTION_SETTINGS:
        setting = _SETTINGS[name]
        value = root.params.get(name)
        source = root.get_parameter_source(name)
        if source is click.core.ParameterSource.COMMANDLINE:
            where = setting.option
        elif source is click.core.ParameterSource.DEFAULT_MAP:
            where = setting.envvar  # run_cli puts the environment there
        else:
            unset.append(name)
            where = "its default"
        values[name] = value
        sources[name] = where
    if unset:
        for name, value in _file_settings(root.params.get("actions")).items():
            if name in unset:
                values[name] = value
                sources[name] = "the actions file's [settings]"
    for name in unset:
        if values[name] is None:  # shell completion parses leniently and may leave it out
            default = _SETTINGS[name].default
            values[name] = default() if callable(default) else default
    if not isinstance(values["db"], Path) and "://" not in str(values["db"]):
        values["db"] = Path(str(values["db"])).expanduser()
    return values, sources


def _file_settings(path: object) -> dict[str, object]:
    """The connection settings of the actions file's ``[settings]`` table, checked as
    Taskdesk checks them. A file Taskdesk could not start with is not ours to report: then
    its values are left out, and the defaults apply."""
    if not isinstance(path, Path):
        return {}
    path = path.expanduser()  # as Taskdesk reads it (TASKDESK_ACTIONS=~/… is not expanded)
    if not path.is_file():
        return {}
    import tomllib  # only where there is such a file

    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("settings", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    found: dict[str, object] = {}
    if not isinstance(table, dict):
        return found
    for name in CONNECTION_SETTINGS:
        if name in table:
            try:
                found[name] = _SETTINGS[name].kind.convert(table[name], None, None)
            except click.BadParameter:
                continue
    return found
