"""Python plugins: actions from ``*.py`` files in a folder and from installed distributions.

A plugin needs nothing of Taskdesk: a module-level list ``TASKDESK_ACTIONS`` of dicts
``{"name", "description", "schema", "run"}`` (``run(data, ctx)`` returns the JSON result;
see the ``taskdesk`` module for the contract and a decorator that builds the list). An entry
point of group ``taskdesk.actions`` may name such a list, or a module holding one.

A plugin that cannot be used (it does not import, or an entry is wrong) is left out: one
``log.error`` line naming it and the problem, and a PluginProblem for /health. A name that is
taken is not a plugin's problem but a conflict between two sources: DuplicateActionError.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from service.actions.base import Action, JsonObject, PluginProblem, name_problem
from service.actions.registry import ActionRegistry, schema_problem

log = logging.getLogger("taskdesk.actions")

ENTRY_POINT_GROUP = "taskdesk.actions"
ENTRY_KEYS = ("name", "description", "schema", "run", "timeout")
DEFAULT_SCHEMA: JsonObject = {"type": "object"}


class _PluginError(Exception):
    """What is wrong with one plugin (its text goes into the log and /health)."""


def load_plugins(
    registry: ActionRegistry, folder: Path | None, *, entry_points: bool = True
) -> list[PluginProblem]:
    """Register the actions of every ``*.py`` in *folder* (sorted by name; files starting
    with a dot are editors' and are skipped) and, with *entry_points*, of every entry point of
    group ``taskdesk.actions``. Returns the plugins left out; raises DuplicateActionError."""
    problems: list[PluginProblem] = []
    if folder is not None:
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith(".") or not path.is_file():
                continue
            name = _module_name(path)
            # A file left out leaves no module behind, half-imported or not.
            _load(registry, f"plugin {path}", functools.partial(_file_actions, path, name),
                  problems, forget=functools.partial(sys.modules.pop, name, None))
    if entry_points:
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = point.dist.name if point.dist is not None else "unknown"
            source = f"entry point {point.name} (distribution {dist})"
            _load(registry, source, point.load, problems)
    return problems


def _load(registry: ActionRegistry, source: str, entries: Callable[[], Any],
          problems: list[PluginProblem], forget: Callable[[], object] | None = None) -> None:
    try:
        loaded = entries()
        if isinstance(loaded, ModuleType):
            loaded = _module_actions(loaded)
        actions = [_action(source, i, entry) for i, entry in enumerate(_entry_list(loaded))]
    except (Exception, SystemExit) as exc:  # a plugin's import may do anything, exit included
        error = _one_line(exc if isinstance(exc, _PluginError) else
                          f"{type(exc).__name__}: {exc}")
        log.error("plugin not loaded: %s: %s", source, error)
        problems.append(PluginProblem(source, error))
        if forget is not None:
            forget()
        return
    for action in actions:
        registry.register(action)  # DuplicateActionError: fatal, by design


def _module_name(path: Path) -> str:
    # A name of its own for each file, so that plugins/util.py in two folders, or a plugin
    # called json.py, never meets another module.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    return f"taskdesk_plugin_{digest}_{stem}"


def _file_actions(path: Path, name: str) -> Any:
    return _module_actions(_import_file(path, name))


def _import_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _PluginError("cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while it runs, as an import would have it (dataclasses need that).
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)  # no half-imported module left behind
        raise
    return module


def _module_actions(module: ModuleType) -> Any:
    if not hasattr(module, "TASKDESK_ACTIONS"):
        raise _PluginError("it has no TASKDESK_ACTIONS list")
    return module.TASKDESK_ACTIONS


def _entry_list(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _PluginError(f"TASKDESK_ACTIONS must be a list of dicts, not {type(value).__name__}")
    return list(value)


def _action(source: str, index: int, entry: Any) -> Action:
    where = f"TASKDESK_ACTIONS[{index}]"
    if not isinstance(entry, dict):
        raise _PluginError(f"{where} must be a dict, not {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
    if unknown:
        raise _PluginError(f"{where}: unknown key(s) {', '.join(unknown)} "
                         f"(expected {', '.join(ENTRY_KEYS)})")
    name = entry.get("name")
    problem = name_problem(name)
    if problem is not None:
        raise _PluginError(f"{where}: {problem}")
    assert isinstance(name, str)
    where = f"action {name!r}"
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise _PluginError(f"{where}: description must be a string")
    schema = entry.get("schema", DEFAULT_SCHEMA)
    problem = schema_problem(schema)
    if problem is not None:
        raise _PluginError(f"{where}: {problem}")
    run = entry.get("run")
    if not callable(run):
        raise _PluginError(f"{where}: run must be a function run(data, ctx)")
    timeout = entry.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not math.isfinite(timeout) or timeout <= 0):
        raise _PluginError(f"{where}: timeout must be a number of seconds > 0")
    return Action(name=name, description=description, schema=schema, kind="python", run=run,
                  source=source, timeout=None if timeout is None else float(timeout))


def _one_line(error: object) -> str:
    return " | ".join(line.strip() for line in str(error).splitlines() if line.strip()) or "?"
