"""The task record and its statuses as every part of Taskdesk sees them, whatever the backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Literal


class TaskStatus(StrEnum):
    """Where a task is in its life. Moves a user may ask for are defined here once, and the
    stores, the service and the window all use these definitions.

    ``queued`` → ``running`` (claimed) → ``completed``; an attempt that fails goes back to
    ``queued`` until its attempts are spent, then ``failed``; ``cancelled`` by a user.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def can_cancel(self) -> bool:
        return self in CANCELLABLE

    @property
    def can_retry(self) -> bool:
        return self in RETRYABLE

    @property
    def is_finished(self) -> bool:
        return self in FINISHED


STATUSES: tuple[TaskStatus, ...] = tuple(TaskStatus)
# A running task is asked to stop, and ends cancelled when its attempt ends.
CANCELLABLE: frozenset[TaskStatus] = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING})
RETRYABLE: frozenset[TaskStatus] = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
FINISHED: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)


def describe_statuses(statuses: frozenset[TaskStatus]) -> str:
    """'failed or cancelled', in the order of STATUSES (for messages)."""
    names = [s.value for s in STATUSES if s in statuses]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def parse_status(text: str | None) -> TaskStatus | None:
    """A status filter as given by a user: None for none; ValueError naming the valid ones."""
    if text is None:
        return None
    try:
        return TaskStatus(text)
    except ValueError:
        valid = ", ".join(STATUSES)
        raise ValueError(f"unknown status {text!r}; valid: {valid}") from None


FinishStatus = Literal[TaskStatus.COMPLETED, TaskStatus.QUEUED, TaskStatus.FAILED]


@dataclass(frozen=True, slots=True)
class Finish:
    """How attempt *attempt* of a running task ended, to be stored: ``completed`` with the
    result JSON in *text* at time *when*; ``queued`` again with the error in *text*, due at
    *when*; or ``failed`` for good with the error in *text* at time *when*. The attempt
    number fences it: an outcome arriving after the task moved on changes nothing."""

    task_id: str
    attempt: int
    status: FinishStatus
    text: str
    when: float


class TaskSort(StrEnum):
    """What a listing is ordered by. Every order ends with the insertion order (``seq``) in
    the same direction, so it is total: ties never make a page repeat or skip a task. A time
    a task does not have yet (not started, not finished: no duration) counts as -1, before
    every real one, so such tasks come first ascending and last descending, on every backend.
    Texts compare by code point. A backend serves each order from an index, so a page deep in
    a million tasks costs what the first does; a new order is one more member here and, in
    each backend, its expression, its index and a case in ``sort_value``."""

    CREATED = "created"  # the insertion order: creation, without ties of the clock
    STARTED = "started"
    FINISHED = "finished"
    DURATION = "duration"
    ATTEMPTS = "attempts"
    ACTION = "action"
    STATUS = "status"
    PRIORITY = "priority"


SORTS: tuple[TaskSort, ...] = tuple(TaskSort)
# The API's name of the first order, before there were others: still understood.
_SORT_ALIASES = {"newest": TaskSort.CREATED}
ORDERS = ("asc", "desc")
# What a time or a duration a task does not have counts as in an order.
ABSENT = -1.0


def parse_sort(text: str | None) -> TaskSort:
    """An order as given by a user: the default for none; ValueError naming the valid ones."""
    if text is None:
        return TaskSort.CREATED
    try:
        return _SORT_ALIASES.get(text) or TaskSort(text)
    except ValueError:
        raise ValueError(f"unknown sort {text!r}; valid: {', '.join(SORTS)}") from None


def parse_order(text: str | None) -> bool:
    """``asc`` or ``desc`` as given by a user, as "descending" (the default for none);
    ValueError naming the valid ones."""
    if text is None:
        return True
    if text not in ORDERS:
        raise ValueError(f"unknown order {text!r}; valid: {', '.join(ORDERS)}")
    return text == "desc"


def sort_value(sort: TaskSort, task: Task) -> int | float | str:
    """What *sort* compares of *task* before its ``seq``, exactly as the stores' SQL computes
    it (the same float subtraction for a duration), so that a cursor made from a task and an
    order computed in Python agree with the database's."""
    match sort:
        case TaskSort.CREATED:
            return task.seq
        case TaskSort.STARTED:
            return ABSENT if task.started_at is None else task.started_at
        case TaskSort.FINISHED:
            return ABSENT if task.processed_at is None else task.processed_at
        case TaskSort.DURATION:
            if task.started_at is None or task.processed_at is None:
                return ABSENT
            return task.processed_at - task.started_at
        case TaskSort.ATTEMPTS:
            return task.attempts
        case TaskSort.ACTION:
            return task.action
        case TaskSort.STATUS:
            return task.status.value
        case TaskSort.PRIORITY:
            return task.priority


def sort_key(sort: TaskSort, task: Task) -> tuple[int | float | str, int]:
    """Where *task* stands in *sort*, ascending (Python's ``sorted(…, reverse=True)`` gives
    the descending order)."""
    return sort_value(sort, task), task.seq


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which tasks a listing shows: every filter given must match. *search* matches a
    prefix of the id or part of the action (ASCII letters in any case); *ids* restricts the
    listing to those tasks; *scheduled_after* keeps queued tasks due after that time. *sort*
    and *descending* say in what order (counts ignore them)."""

    status: TaskStatus | None = None
    action: str | None = None
    search: str | None = None
    ids: Sequence[str] | None = None
    # Only queued tasks not due until after this time (delayed, or waiting for a retry).
    scheduled_after: float | None = None
    sort: TaskSort = TaskSort.CREATED
    descending: bool = True


# A task's log keeps its last 10 MiB: enough for any output a person reads, bounded for a
# command that prints without end.
MAX_LOG_BYTES = 10 * 1024 * 1024

# Times are kept to 15 significant digits (10 µs for times of this century): what a REAL
# written as JSON by SQLite shows, so that a time read back through any path equals the one
# stored. Stores round every time they are given with stored_time().
TIME_DIGITS = 15


def stored_time(value: float) -> float:
    return float(format(value, f".{TIME_DIGITS}g"))


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to store. *run_after*: not run before then (None: at once); *after*: ids of
    tasks that must all complete first; *idempotency_key*: a second add with the same key
    returns the first task instead of storing another, as long as that task is kept, and
    *request_hash* tells a repeat of the same request from a different one."""

    action: str
    data_json: str
    max_attempts: int
    priority: int = 0
    run_after: float | None = None
    after: tuple[str, ...] = ()
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Added:
    """What ``add`` did: the task, and whether it is new (False: the idempotency key was
    known, and *task* is the first task stored with it, as it is now)."""

    task: Task
    created: bool


@dataclass(frozen=True, slots=True)
class Progress:
    """How far attempt *attempt* of a running task has come: *fraction* 0–1 or None
    (unknown), and an optional message."""

    task_id: str
    attempt: int
    fraction: float | None
    message: str | None


@dataclass(frozen=True, slots=True)
class LogSlice:
    """Part of a task's log: *data* starts at byte *start* of everything the task ever
    logged (earlier bytes may have been dropped to keep the log capped), and *next_offset*
    is where the next read should start."""

    data: bytes
    start: int
    next_offset: int


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store keeps of a schedule between runs."""

    name: str
    paused: bool
    last_due: float | None
    last_task_id: str | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What another instance sharing the database changed (``TaskStore.watch``): the tasks
    it changed (created, moved, deleted), and whether it paused or resumed the queue."""

    task_ids: tuple[str, ...] = ()
    queue: bool = False


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """An instance of Taskdesk using the database (``TaskStore.nodes``). Times are Unix
    seconds on the database's clock; *alive*: its last heartbeat is within its lease;
    *current*: this instance; *running*: ids of the tasks it runs now."""

    id: str
    host: str
    pid: int
    api_url: str | None
    started_at: float
    heartbeat_at: float
    alive: bool
    current: bool
    running: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    seq: int  # insertion order; a stable cursor for paging (not part of the API)
    id: str
    action: str
    data_json: str
    status: TaskStatus
    result_json: str | None
    error: str | None
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    processed_at: float | None
    run_after: float
    priority: int = 0
    after: tuple[str, ...] = ()
    waiting: int = 0  # how many of *after* have not completed yet
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Task:
        """A task from its values in field order (seq, id, action, … cancel_requested), with
        *after* as JSON text (or None)."""
        (seq, id_, action, data, status, result, error, attempts, max_attempts,
         created_at, started_at, processed_at, run_after, priority, after, waiting, progress,
         progress_message, cancel_requested) = row
        return cls(
            seq=seq,
            id=id_,
            action=action,
            data_json=data,
            status=TaskStatus(status),
            result_json=result,
            error=error,
            attempts=attempts,
            max_attempts=max_attempts,
            created_at=created_at,
            started_at=started_at,
            processed_at=processed_at,
            # Rows older than delays stored 0 for "at once": due since they were created.
            run_after=run_after or created_at,
            priority=priority,
            after=tuple(json.loads(after)) if after else (),
            waiting=waiting,
            progress=progress,
            progress_message=progress_message,
            cancel_requested=bool(cancel_requested),
        )

    # Decoded on first use and kept: a table showing thousands of rows never needs most of
    # them. (Not functools.cached_property: on Python 3.11 it takes a lock shared by every
    # instance, which API threads listing tasks contend for.)
    @property
    def data(self) -> Any:
        return self._decoded("data", self.data_json)

    @property
    def result(self) -> Any:
        return self._decoded("result", self.result_json)

    def _decoded(self, name: str, text: str | None) -> Any:
        cache = self.__dict__.setdefault("_decoded_cache", {})
        if name not in cache:
            cache[name] = _loads(text)
        return cache[name]

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.processed_at is None:
            return None
        return max(0.0, self.processed_at - self.started_at)

    def to_json(self) -> str:
        """to_dict() as JSON text, with data and result spliced in as stored (always valid
        JSON: written by Taskdesk, or made so by migration 2), so a listing of many tasks
        does not decode and re-encode them."""
        fields = [
            ("id", _json(self.id)),
            ("action", _json(self.action)),
            ("data", self.data_json),
            ("status", _json(self.status)),
            ("result", "null" if self.result_json is None else self.result_json),
            ("error", _json(self.error)),
            ("attempts", _json(self.attempts)),
            ("max_attempts", _json(self.max_attempts)),
            ("created_at", _json(self.created_at)),
            ("started_at", _json(self.started_at)),
            ("processed_at", _json(self.processed_at)),
            ("run_after", _json(self.run_after)),
            ("priority", _json(self.priority)),
            ("after", json_list(self.after)),
            ("progress", _json(self.progress)),
            ("progress_message", _json(self.progress_message)),
            ("cancel_requested", "true" if self.cancel_requested else "false"),
        ]
        return "{" + ",".join(f'"{name}":{value}' for name, value in fields) + "}"

    def to_dict(self) -> dict[str, Any]:
        """The task as the API contract describes it."""
        return {
            "id": self.id,
            "action": self.action,
            "data": self.data,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "processed_at": self.processed_at,
            "run_after": self.run_after,
            "priority": self.priority,
            "after": list(self.after),
            "progress": self.progress,
            "progress_message": self.progress_message,
            "cancel_requested": self.cancel_requested,
        }


def json_list(items: Sequence[str]) -> str:
    """A list of strings as JSON text, compact, as Task.to_json writes ``after``."""
    return "[" + ",".join(_json(i) for i in items) + "]"


def _json(value: str | int | float | None) -> str:
    """One scalar as JSON, without json.dumps' per-call set-up (a task has nine); strings
    with the escapes SQLite's json_quote() uses, so that a store may write the same text."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring(value)  # the same escapes as json_quote
    if isinstance(value, int):
        return int.__repr__(value)
    return _float_json(value)


def _float_json(value: float) -> str:
    """A time as SQLite writes a REAL in JSON: TIME_DIGITS significant digits, always with a
    fraction or an exponent. Times are always finite."""
    text = format(value, f".{TIME_DIGITS}g")
    if "e" in text:
        mantissa, exponent = text.split("e")
        return (mantissa if "." in mantissa else mantissa + ".0") + "e" + exponent
    return text if "." in text else text + ".0"


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # Rows written by other programs (e.g. the tutorial) may hold plain text.
        return text
