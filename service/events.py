"""What the service tells its subscribers: one TaskEvent per change of a task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from storage import Task


class EventKind(StrEnum):
    SUBMITTED = "submitted"
    SUBMITTED_MANY = "submitted_many"  # a batch; the event's task is its newest
    STARTED = "started"
    COMPLETED = "completed"
    REQUEUED = "requeued"  # an attempt failed; it runs again after a backoff
    RELEASED = "released"  # handed back to the queue without counting the attempt
    FAILED = "failed"
    CANCELLED = "cancelled"
    CANCEL_REQUESTED = "cancel_requested"  # a running task was asked to stop
    RETRIED = "retried"
    READY = "ready"  # every task it waited for has completed
    PROGRESS = "progress"
    DELETED = "deleted"  # the event's task is the task as it was
    PAUSED = "paused"  # the queue as a whole: the event has no task
    RESUMED = "resumed"
    # Another instance sharing the database changed the task (the event's task, re-read).
    CHANGED_ELSEWHERE = "changed_elsewhere"
    # Anything may have changed (another instance changed too much to name, or contact with
    # the database was lost for a while): re-read what you show. The event has no task.
    RESYNC = "resync"


# Changes after which a queued task may be ready to run (workers listen for these).
NEW_WORK: frozenset[EventKind] = frozenset({
    EventKind.SUBMITTED, EventKind.SUBMITTED_MANY, EventKind.RETRIED, EventKind.REQUEUED,
    EventKind.RELEASED, EventKind.READY, EventKind.RESUMED, EventKind.CHANGED_ELSEWHERE,
    EventKind.RESYNC,
})


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """What happened to a task; ``task`` is the task as stored right after the change (as it
    was, for DELETED), and ``count`` how many tasks the change concerned (more than one for
    SUBMITTED_MANY)."""

    kind: EventKind
    task: Task | None  # None only for events of the queue as a whole (PAUSED, RESUMED, RESYNC)
    count: int = 1
    # SUBMITTED_MANY: the ids of the batch, oldest first (its copies differ only by id), so a
    # subscriber can report every task without reading them back (service/event_log.py).
    ids: tuple[str, ...] = ()


Listener = Callable[[TaskEvent], None]
