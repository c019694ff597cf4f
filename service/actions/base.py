"""What an action is, what it is given while it runs, and the errors of declaring actions.

An action is a name, a description, a JSON Schema for its ``data`` and a callable
``run(data, ctx)`` returning the JSON value stored as the task's result. Built-ins, Python
plugins and commands declared in the actions file are all the same ``Action``; ``kind`` and
``source`` only say where one came from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JsonObject = dict[str, Any]
ActionKind = Literal["builtin", "python", "command"]

# The API refuses longer action names (TaskService.validate): no action may have one.
MAX_NAME_LENGTH = 100


class RunContext(Protocol):
    """What a running action is given besides its data.

    ``cancelled`` is set when the task is to stop (the user cancelled it, it timed out or
    Taskdesk is shutting down): an action may wait on it or poll it, and should then return
    soon, preferably by raising ActionCancelled.
    """

    task_id: str
    attempt: int
    cancelled: threading.Event

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Report how far the action is: *fraction* from 0 to 1, None when unknown."""

    def log(self, text: str | bytes) -> None:
        """Append to the task's log (bytes are kept as they are: a command's output)."""


@dataclass
class SimpleContext:
    """A context for running an action outside a worker that reports progress: progress and
    log go nowhere and ``cancelled`` is never set unless the caller sets it."""

    task_id: str = ""
    attempt: int = 1
    cancelled: threading.Event = field(default_factory=threading.Event)

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        return None

    def log(self, text: str | bytes) -> None:
        return None


RunFunction = Callable[[JsonObject, RunContext], Any]
CheckFunction = Callable[[JsonObject], None]


@dataclass(frozen=True)
class Action:
    """One action. *schema* (JSON Schema draft 2020-12) is checked at submit time, then
    *check* (when given) for what a schema cannot say; both raise ValidationError.

    *source* names where the action was declared, for messages: "built-in",
    "plugin /path/x.py", "entry point foo (distribution bar)", "/path/actions.toml line 3".
    *timeout* is the seconds it may run (None: Taskdesk's --task-timeout). *simulated_work*
    is True only for the tutorial's built-ins, which keep their simulated --work-delay.
    """

    name: str
    description: str
    schema: JsonObject
    kind: ActionKind
    run: RunFunction
    source: str
    check: CheckFunction | None = None
    timeout: float | None = None
    simulated_work: bool = False


def name_problem(name: object) -> str | None:
    """Why *name* cannot name an action, or None when it can."""
    if not isinstance(name, str):
        return "the name must be a string"
    if not name.strip():
        return "the name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name must be at most {MAX_NAME_LENGTH} characters"
    if not name.isprintable():
        return "the name must not contain control characters"
    return None


class ActionCancelled(Exception):  # noqa: N818 (the name the plugin contract uses)
    """A run that ended because ``ctx.cancelled`` was set."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class DuplicateActionError(Exception):
    """Two actions with one name: fatal at start-up, the message names both sources."""

    def __init__(self, name: str, source: str, taken_by: str) -> None:
        super().__init__(
            f"action {name!r} from {source} has the same name as the one from {taken_by}"
        )
        self.name = name
        self.source = source
        self.taken_by = taken_by


class InvalidActionError(ValueError):
    """An action that cannot be registered (an invalid schema, say); names its source."""


class ConfigFileError(Exception):
    """A bad actions file; ``str()`` is the one line "FILE line N: problem"."""

    def __init__(self, path: object, line: int | None, problem: str) -> None:
        where = f"{path} line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class PluginProblem:
    """A plugin file or entry point that could not be loaded: Taskdesk runs without it."""

    source: str
    error: str

    def __str__(self) -> str:
        return f"{self.source}: {self.error}"
