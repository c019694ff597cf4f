"""EventLog: the recent changes of tasks, numbered, for readers on other threads (GET /events).

A TaskService subscriber appends every change to a ring of ``LoggedEvent``s, each with the
next id of a sequence that only grows. Readers (one per event stream, on API threads) ask for
the events after the last id they have, waiting on a condition variable while there are none.
Producers never wait for readers: the ring drops its oldest events, and a reader whose next
event was dropped is told so (``Read.gap``) instead of being given a history with a hole in
it; it then starts again from the newest id (the stream's ``resync``).

Why ids start at the start time in microseconds: an id from an earlier run of Taskdesk (a
client resuming after a restart) is then always below this run's ids, so it reads as "too far
behind" and gets a resync, never a silent resume from the wrong place; a run cannot make more
than one event per microsecond, so this run's ids never reach the next run's.

The ring holds the Task objects the service passed (no copy, no JSON yet): a task is written
as JSON only when a reader first asks for it, once, whatever the number of readers, so the
threads that make the changes pay for an append and nothing more. It is bounded both by count
and by the size of the tasks' texts, since one task's data and result may be 1 MiB each.

No Qt: the API threads use it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.events import EventKind, TaskEvent
from service.task_service import TaskService
from storage import Task, TaskStatus

DEFAULT_CAPACITY = 4096
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# What an event costs beyond its task's texts (the Task object, the entry): for the byte bound.
_OVERHEAD_BYTES = 600


class LoggedEvent:
    """One change, as readers get it: *task* is the task right after the change (as it was,
    for DELETED), None for a change of the queue as a whole (PAUSED, RESUMED)."""

    __slots__ = ("_json", "id", "kind", "size", "task")

    def __init__(self, event_id: int, kind: EventKind, task: Task | None) -> None:
        self.id = event_id
        self.kind = kind
        self.task = task
        self.size = _OVERHEAD_BYTES + (0 if task is None else _task_bytes(task))
        self._json: str | None = None

    def task_json(self) -> str:
        """The task as the API writes it (GET /tasks/{id}); made once, on first use. Two
        readers may make it at once: both make the same text, and either may be kept."""
        text = self._json
        if text is None:
            text = "null" if self.task is None else self.task.to_json()
            self._json = text
        return text

    def __repr__(self) -> str:
        return f"LoggedEvent({self.id}, {self.kind}, {self.task and self.task.id})"


def _task_bytes(task: Task) -> int:
    return len(task.data_json) + len(task.result_json or "") + len(task.error or "")


@dataclass(frozen=True, slots=True)
class Read:
    """What a reader gets: the events after the id it asked for (oldest first), or, when some
    of those were dropped (or the id is not one of this run's), ``gap`` and no events.
    ``last_id`` is the newest id at the time: where to go on from after a gap."""

    events: Sequence[LoggedEvent]
    gap: bool
    last_id: int


class EventLog:
    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        first_id: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        start = time.time_ns() // 1000 if first_id is None else first_id
        self._last_id = start - 1  # the id of the newest event (none yet: one below the first)
        self._ring: deque[LoggedEvent] = deque()
        self._bytes = 0
        self._changed = threading.Condition(threading.Lock())
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def attach(cls, service: TaskService, capacity: int = DEFAULT_CAPACITY,
               max_bytes: int = DEFAULT_MAX_BYTES) -> EventLog:
        """A log fed by *service*'s changes from now on."""
        log = cls(capacity, max_bytes)
        log._unsubscribe = service.subscribe(log.record)
        return log

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def first_id(self) -> int:
        """The id of the oldest event still held (last_id + 1 when none is)."""
        with self._changed:
            return self._ring[0].id if self._ring else self._last_id + 1

    def __len__(self) -> int:
        return len(self._ring)

    # -- producers (the service's subscriber, on whichever thread made the change) ---------------

    def record(self, event: TaskEvent) -> None:
        """Append *event*; a batch (SUBMITTED_MANY) becomes one event per task."""
        if event.kind is EventKind.SUBMITTED_MANY and event.task is not None and event.ids:
            self._append_batch(event.task, event.ids)
        else:
            self._append([(event.kind, event.task)])

    def _append_batch(self, newest: Task, ids: Sequence[str]) -> None:
        # Copies differ only by id and seq (stored in one statement, consecutive). They are
        # reported as submitted: the newest may have been claimed before it was read back.
        submitted = newest
        if newest.status is not TaskStatus.CANCELLED:  # cancelled at once: waits for a failure
            submitted = dataclasses.replace(
                newest, status=TaskStatus.QUEUED, attempts=0, started_at=None,
                processed_at=None, result_json=None, error=None, progress=None,
                progress_message=None, cancel_requested=False)
        n = len(ids)
        # Of a batch larger than the ring only its newest tasks could be kept anyway; the ids
        # of the others are used all the same, so a reader who needed them sees the gap.
        skipped = max(0, n - self.capacity)
        copies = [
            (EventKind.SUBMITTED,
             dataclasses.replace(submitted, id=task_id, seq=newest.seq - (n - 1 - k)))
            for k, task_id in enumerate(ids) if k >= skipped
        ]
        self._append(copies, skipped)

    def _append(self, items: Sequence[tuple[EventKind, Task | None]], skipped: int = 0) -> None:
        with self._changed:
            next_id = self._last_id + 1 + skipped
            ring = self._ring
            for kind, task in items:
                entry = LoggedEvent(next_id, kind, task)
                ring.append(entry)
                self._bytes += entry.size
                next_id += 1
            self._last_id = next_id - 1
            # Keep at least the newest event, however large (a 2 MiB task is still news).
            # The ring's ids stay consecutive: a batch that skipped ids filled it whole.
            while len(ring) > 1 and (len(ring) > self.capacity or self._bytes > self.max_bytes):
                self._bytes -= ring.popleft().size
            self._changed.notify_all()

    def wake_all(self) -> None:
        """Wake every waiting reader (to notice a stop or a disconnect sooner)."""
        with self._changed:
            self._changed.notify_all()

    # -- readers ----------------------------------------------------------------------------------

    def read(self, after: int, limit: int = 1000, timeout: float = 0.0) -> Read:
        """Up to *limit* events with ids above *after*, waiting up to *timeout* seconds for one
        when there is none yet. ``gap`` when the event after *after* is no longer held, or
        *after* is above every id given (another run's)."""
        with self._changed:
            if not self._holds_after(after):
                return Read((), True, self._last_id)
            if after == self._last_id and timeout > 0:
                self._changed.wait(timeout)
                if not self._holds_after(after):  # dropped while we waited
                    return Read((), True, self._last_id)
            if after == self._last_id:
                return Read((), False, after)
            ring = self._ring
            start = after + 1 - ring[0].id  # the ring's ids are consecutive
            count = min(limit, len(ring) - start)
            events = [ring[start + i] for i in range(count)]
            return Read(events, False, self._last_id)

    def _holds_after(self, after: int) -> bool:
        """Whether every event after *after* is still here (or none has happened yet)."""
        if after > self._last_id:
            return False
        first = self._ring[0].id if self._ring else self._last_id + 1
        return after >= first - 1

