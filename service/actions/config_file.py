"""The actions file (``actions.toml``): commands declared as actions.

::

    [actions.archive]
    description = "Pack a folder into a .tar.gz"
    argv = ["tar", "-czf", "{output}", "-C", "{folder}", "."]
    timeout = 600          # seconds; optional, default --task-timeout
    cwd = "~"              # optional
    env = { LC_ALL = "C" } # optional additions to a minimal inherited environment
    shell = false          # optional: true runs argv, one string, with /bin/sh -c
    [actions.archive.schema]
    type = "object"
    required = ["folder", "output"]
    properties.folder = { type = "string", title = "Folder", format = "path" }
    properties.output = { type = "string", title = "Archive file" }

The same file holds ``[schedules.<name>]`` tables and a ``[settings]`` table, whose meaning
is defined elsewhere: they are handed over as they are, checked only to be tables. Anything
else is an error. Every error is one line, "FILE line N: problem", for the start-up to print
before it exits 1.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from service.actions import placeholders
from service.actions.base import Action, ConfigFileError, JsonObject, RunContext, name_problem
from service.actions.command import CommandSpec, run_command
from service.actions.reaper import ProcessReaper
from service.actions.registry import schema_problem
from service.actions.toml_positions import KeyLines

TOP_LEVEL_KEYS = ("actions", "schedules", "settings")
ACTION_KEYS = ("description", "argv", "timeout", "cwd", "env", "schema", "shell")

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    actions: list[Action] = field(default_factory=list)
    # Raw tables, for whoever gives them a meaning.
    schedules: dict[str, JsonObject] = field(default_factory=dict)
    settings: JsonObject = field(default_factory=dict)


def load_config_file(
    path: Path,
    *,
    default_timeout: float,
    kill_grace: float = 5.0,
    reaper: ProcessReaper | None = None,
) -> ConfigFile:
    """Read *path*; ConfigFileError ("FILE line N: problem") if it is not a valid actions
    file. The command actions run with *kill_grace* and *reaper* (see run_command)."""
    text = _read_text(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, text, exc) from None
    reader = _Reader(path, KeyLines(text))
    for key, value in document.items():
        if key not in TOP_LEVEL_KEYS:
            reader.fail((key,), f"unknown top-level key {key!r} (expected [actions.<name>], "
                                "[schedules.<name>] or [settings])")
        reader.table((key,), value)
    actions = [
        reader.action(name, table, default_timeout, kill_grace, reaper)
        for name, table in document.get("actions", {}).items()
    ]
    schedules = document.get("schedules", {})
    for name, table in schedules.items():
        reader.table(("schedules", name), table)
    return ConfigFile(path, actions, dict(schedules), dict(document.get("settings", {})))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigFileError(path, line, "not UTF-8 text") from None


def _syntax_error(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigFileError:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match is not None:
        problem = message[:match.start()] + f" (column {match.group(2)})"
        return ConfigFileError(path, int(match.group(1)), problem)
    match = _TOML_AT_END.search(message)
    problem = message[:match.start()] + " (at the end of the file)" if match else message
    return ConfigFileError(path, text.count("\n") + 1, problem)


class _Reader:
    """Checks the parsed document, naming the line of whatever it refuses."""

    def __init__(self, path: Path, lines: KeyLines) -> None:
        self.path = path
        self.lines = lines

    def fail(self, key: tuple[str, ...], problem: str) -> NoReturn:
        raise ConfigFileError(self.path, self.lines.line_of(key), problem)

    def table(self, key: tuple[str, ...], value: Any) -> None:
        if not isinstance(value, dict):
            self.fail(key, f"{_dotted(key)} must be a table")

    def action(self, name: str, table: Any, default_timeout: float, kill_grace: float,
               reaper: ProcessReaper | None) -> Action:
        key = ("actions", name)
        self.table(key, table)
        problem = name_problem(name)
        if problem is not None:
            self.fail(key, f"action {name!r}: {problem}")
        where = f"action {name!r}"
        for k in table:
            if k not in ACTION_KEYS:
                self.fail((*key, k), f"{where}: unknown key {k!r} (expected one of "
                                     f"{', '.join(ACTION_KEYS)})")
        shell = table.get("shell", False)
        if not isinstance(shell, bool):
            self.fail((*key, "shell"), f"{where}: shell must be true or false")
        description = table.get("description", "")
        if not isinstance(description, str):
            self.fail((*key, "description"), f"{where}: description must be a string")
        argv = self._argv(key, where, table, shell)
        timeout = table.get("timeout")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float)
                                    or not math.isfinite(timeout) or timeout <= 0):
            self.fail((*key, "timeout"), f"{where}: timeout must be a number of seconds > 0")
        cwd = table.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not cwd or "\0" in cwd):
            self.fail((*key, "cwd"), f"{where}: cwd must be a folder's path")
        env = self._env(key, where, table.get("env", {}))
        schema = table.get("schema", {"type": "object"})
        problem = schema_problem(schema)
        if problem is not None:
            self.fail((*key, "schema"), f"{where}: {problem}")
        self._check_placeholders(key, where, argv, schema)
        spec = CommandSpec(tuple(argv), cwd, env, float(timeout or default_timeout), shell)
        return Action(
            name=name, description=description, schema=schema, kind="command",
            run=_runner(spec, kill_grace, default_timeout, reaper),
            source=f"{self.path} line {self.lines.line_of(key)}",
            timeout=spec.timeout,
        )

    def _argv(self, key: tuple[str, ...], where: str, table: JsonObject,
              shell: bool) -> list[str]:
        if "argv" not in table:
            self.fail(key, f'{where}: argv is required, e.g. argv = ["tar", "-czf", '
                           '"{output}", "-C", "{folder}", "."]')
        argv = table["argv"]
        if shell and isinstance(argv, str):
            argv = [argv]
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            self.fail((*key, "argv"), f"{where}: argv must be a list of strings"
                      + (" (or, with shell = true, one string)" if shell else ""))
        if not argv or not argv[0].strip():
            self.fail((*key, "argv"), f"{where}: argv must not be empty: it starts with the "
                                      "program to run")
        if shell and len(argv) != 1:
            self.fail((*key, "argv"), f"{where}: with shell = true, argv is one command string")
        if any("\0" in a for a in argv):
            self.fail((*key, "argv"), f"{where}: argv must not hold NUL characters")
        for i, template in enumerate(argv):
            try:
                names = placeholders.names(template)
            except placeholders.PlaceholderError as exc:
                self.fail((*key, "argv"), f"{where}: argv[{i}]: {exc}")
            if i == 0 and names and not shell:
                self.fail((*key, "argv"), f"{where}: argv[0], the program, cannot hold a "
                                          "placeholder: the task's data would choose what runs")
        return argv

    def _env(self, key: tuple[str, ...], where: str, env: Any) -> dict[str, str]:
        at = (*key, "env")
        if not isinstance(env, dict):
            self.fail(at, f"{where}: env must be a table of names and strings")
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                self.fail((*at, name), f"{where}: env: {name!r} cannot name an environment "
                                       "variable")
            if not isinstance(value, str) or "\0" in value:
                self.fail((*at, name), f"{where}: env.{name} must be a string")
        return dict(env)

    def _check_placeholders(self, key: tuple[str, ...], where: str, argv: list[str],
                            schema: JsonObject) -> None:
        properties = schema.get("properties")
        known = properties if isinstance(properties, dict) else {}
        for i, template in enumerate(argv):
            for name in placeholders.names(template):
                if name not in known:
                    hint = "" if _NAME.match(name) else " (write {{ and }} for literal braces)"
                    self.fail((*key, "argv"), f"{where}: argv[{i}]: placeholder {{{name}}} "
                                              f"names no property of the schema{hint}")


def _runner(spec: CommandSpec, kill_grace: float, default_timeout: float,
            reaper: ProcessReaper | None) -> Callable[[JsonObject, RunContext], JsonObject]:
    def run(data: JsonObject, ctx: RunContext) -> JsonObject:
        return run_command(spec, data, ctx, kill_grace=kill_grace,
                           default_timeout=default_timeout, reaper=reaper)

    return run


def _dotted(key: tuple[str, ...]) -> str:
    return ".".join(key)
