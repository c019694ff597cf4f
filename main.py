"""The ``taskdesk`` command: with no subcommand it runs Taskdesk, with one it talks to a running
Taskdesk through its API (``taskdesk list``, ``taskdesk submit …``: service/cli/).

This module stays light on purpose. Subcommands are run in shell loops, so they must start in a
few dozen milliseconds: nothing of Qt, the HTTP server or the database is imported here. The
program itself — the one place that wires storage, service, API and window together — is
program.py, imported only once the settings say Taskdesk is to run.

The options of the group are Taskdesk's settings (service/settings.py), read from the command
line, the environment and the actions file's ``[settings]`` table alike; the subcommands use
some of them to find the running Taskdesk (its port, its database's token file).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from service.cli.commands import COMMANDS, OrderedGroup
from service.settings import (
    CONTEXT_SETTINGS,
    HELP,
    PROG,
    Settings,
    click_options,
    desktop_entry_options,
    environment_defaults,
    run_cli,
    settings_from_context,
    version_option,
)

EXIT_STARTUP_FAILED = 1
COMPLETE_VAR = "_TASKDESK_COMPLETE"  # click's shell completion: _TASKDESK_COMPLETE=bash_source


@click.pass_context
def _run_or_dispatch(ctx: click.Context, /, **_: object) -> Settings | None:
    # With a subcommand, the settings are only read (by the subcommand, for what it needs):
    # an API exposed without a token is the server's concern, not `taskdesk list`'s.
    return settings_from_context(ctx) if ctx.invoked_subcommand is None else None


taskdesk = OrderedGroup(
    PROG,
    params=[*click_options(), version_option(), *desktop_entry_options()],
    callback=_run_or_dispatch,
    commands=COMMANDS,
    invoke_without_command=True,
    help=HELP + "\n\nWith a command, talks to a running Taskdesk through its API instead "
    "(`taskdesk COMMAND --help` says how).",
    context_settings=CONTEXT_SETTINGS,
)


def read_settings(argv: Sequence[str] | None) -> Settings | int:
    """The settings of this run, or the exit code of the subcommand that ran instead.

    Settings come from the command line, the environment and the ``[settings]`` table of the
    actions file, through one validation (exit 2 with one line for a bad value). The actions
    file is found from the first two; a bad one exits 1 with one line."""
    first = run_cli(taskdesk, argv)
    if not isinstance(first, Settings):
        return int(first)
    # Only to run Taskdesk: reading the actions file loads the actions' machinery.
    from service.actions import ConfigFileError
    from service.actions.loading import read_config

    try:
        config = read_config(first.actions, default_timeout=first.task_timeout,
                             kill_grace=first.kill_grace)
    except ConfigFileError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_STARTUP_FAILED) from None
    if config is None or not config.settings:
        return first
    again = run_cli(taskdesk, argv, config=config.settings, config_source=str(config.path))
    assert isinstance(again, Settings)
    return again


def complete_shell() -> int:
    """Answer the shell's completion request (click's protocol, see README "Command line"),
    with the environment's settings beneath the words typed, as a real run has them."""
    from click.shell_completion import shell_complete

    return shell_complete(taskdesk, {"default_map": environment_defaults()}, PROG,
                          COMPLETE_VAR, os.environ[COMPLETE_VAR])


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get(COMPLETE_VAR):
        return complete_shell()
    settings = read_settings(argv)
    if not isinstance(settings, Settings):
        return settings
    from program import run_program  # Qt, the server and the database: only now

    return run_program(settings)


if __name__ == "__main__":
    sys.exit(main())
