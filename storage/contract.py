"""The storage contract: what the service and the workers need from a store, and what each
operation promises. Every backend implements it; one contract test class
(tests/test_store_contract.py) holds every backend to it.

Rules common to every operation:
- A write returns only once its change is committed with the configured durability; when
  it raises, nothing of it was committed.
- Every state change is conditional on the state it starts from (a task is claimed only if
  still queued, an attempt stored only if that attempt is still running), so two racing
  changes to one task have exactly one winner and the loser learns it from the result.
- Times are Unix seconds; the store rounds what it is given with ``stored_time`` and gives
  back exactly what it stored.
- Failures: ``StorageUnavailableError`` when the database cannot be used right now (the
  same call can succeed later); ``DatabaseDamagedError`` when it is damaged (from then on the
  store refuses every write). Messages name the database and the cause.
- Thread-safe: any thread may call any operation at any time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from storage.models import (
    Added,
    Changes,
    Finish,
    LogSlice,
    NewTask,
    NodeInfo,
    Progress,
    ScheduleState,
    Task,
    TaskQuery,
    TaskStatus,
)


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``settle`` stored and claimed: each finished task as stored (None where that
    attempt was no longer running), the tasks claimed, in the order they should run, and the
    tasks changed as a consequence (dependents made ready, or cancelled because a task they
    wait for failed or was cancelled)."""

    finished: list[Task | None]
    claimed: list[Task]
    cascaded: list[Task] = field(default_factory=list)


class TaskStore(Protocol):
    # Where the tasks live, for messages: a file path, or a URL without its password.
    location: str
    # Why the database cannot be used right now, until an operation succeeds again; None
    # when all is well (shown by /health and the window).
    problem: str | None
    # What is wrong with a damaged database, once found; it is never written to again.
    damage: str | None
    # Told once, on whichever thread found the damage, with the message.
    on_damage: Callable[[str], None] | None
    # The schema version before and after opening migrated it.
    migrated: tuple[int, int]
    # Whether other instances may use the database at the same time (and so change tasks
    # under this one, and run nodes of their own).
    shared: bool

    @property
    def identity(self) -> str:
        """This instance as messages name it: "node 7 (host, pid 4242)"."""

    def close(self) -> None:
        """Release every connection and lock; call once every thread using the store is
        done."""

    def announce(self, api_url: str | None) -> None:
        """Record this instance's API address, for a second instance's refusal message and
        for ``nodes``."""

    def watch(self, listener: Callable[[Changes | None], None]) -> Callable[[], None]:
        """Call *listener* with what other instances change, once committed, for as long as
        the store is open; returns a function that stops it. None means "anything may have
        changed": re-read everything (after the store lost contact with the database, and
        every few seconds while it has none). The listener runs on a thread of the store's:
        it must be quick and must not raise. A store no one else can use never calls it."""

    # -- writes ---------------------------------------------------------------------------

    def add(self, new: NewTask, now: float) -> Added:
        """Store a new task as queued, due at ``new.run_after`` (None: *now*).

        With ``new.after``, the task waits until every one of those tasks is completed; if one
        of them is already failed or cancelled, the task is stored cancelled at once, its
        error naming that task. Raises UnknownTasksError (nothing stored) when some of them do
        not exist. With ``new.idempotency_key``: a key already stored returns that task
        (``created`` False) and stores nothing, or raises IdempotencyConflictError when it was
        stored with another ``request_hash``; concurrent adds with one key store one task.
        """

    def add_many(self, new: NewTask, copies: int, now: float) -> list[str]:
        """Store *copies* identical tasks (no idempotency key) in one commit; their ids."""

    def settle(self, finishes: Sequence[Finish], claim: int, now: float) -> Settled:
        """Store how some attempts ended and claim up to *claim* ready tasks, in one commit.

        Ready: queued, due (``run_after`` <= *now*), waiting for no unfinished task, and the
        queue not paused; claimed by priority (highest first), then oldest first. A claimed
        task becomes ``running`` with ``started_at`` = *now*, one more attempt counted and no
        progress; no task is claimed by two callers. Storing a finish is fenced by task id and
        attempt and requires the task to be ``running``; a task whose cancellation was
        requested while it ran ends ``cancelled`` whatever its finish says. A task completed
        makes ready the tasks that waited only for it; one failed or cancelled cancels, down
        the chain, every queued task waiting for it (``Settled.cascaded``).
        """

    def release(self, task_id: str, attempt: int, run_after: float, error: str | None
                ) -> Task | None:
        """Running attempt *attempt* → queued again, due at *run_after*, giving the attempt
        back (the task did not run, or its outcome could not be stored); *error*, if given,
        replaces the task's error. A task whose cancellation was requested ends cancelled
        instead. None if that attempt is no longer running."""

    def cancel_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        """Cancel those of *task_ids* whose status allows it, in one commit: a queued task
        ends ``cancelled`` (and so, down the chain, does every queued task waiting for it); a
        running one is marked ``cancel_requested`` and ends cancelled when its attempt ends.
        Returns every task changed, the cascaded ones included."""

    def retry_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        """Queue again, due at *now*, with a fresh set of attempts and no result, error or
        progress, those of *task_ids* whose status allows it (TaskStatus.can_retry) and none
        of whose ``after`` tasks is failed or cancelled, in one commit."""

    def delete_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Delete those of *task_ids* that are finished, with their logs and idempotency
        keys; return them as they were."""

    def purge(self, completed_before: float, failed_before: float, limit: int) -> list[Task]:
        """Delete up to *limit* tasks completed before *completed_before* or failed or
        cancelled before *failed_before* (by ``processed_at``), oldest first, with their logs
        and idempotency keys; return them as they were. One short commit: retention calls it
        in small batches so that other writes never wait long behind it."""

    def set_progress(self, reports: Sequence[Progress]) -> list[Task]:
        """Record how far running attempts have come, in one commit (fenced by attempt);
        the tasks updated."""

    def append_log(self, task_id: str, data: bytes) -> None:
        """Add *data* to the end of the task's log; the log keeps at most its last
        MAX_LOG_BYTES (storage.models) bytes. Unlike other writes, an append may be held
        back for up to a quarter of a second to be stored with the next ones (a command
        printing line by line must not cost a commit per line); ``read_log`` on this store
        and ``close`` store what is held first."""

    def shift_retry_times(self, seconds: float, after: float) -> int:
        """Move ``run_after`` of queued tasks due after *after* by *seconds* (the wall clock
        was set back); return how many moved."""

    def recover(self, now: float) -> int:
        """Make tasks whose runner is gone runnable again: back to queued with their
        interrupted attempt counted, or failed when that was their last attempt (cancelled
        when cancellation was requested). Return how many. Call at start-up, before any
        worker of this instance claims. Tasks run by other instances that are still alive
        are never touched."""

    def set_paused(self, paused: bool) -> None:
        """Pause (nothing is claimed) or resume the queue, for every instance, durably."""

    def set_schedule_paused(self, name: str, paused: bool) -> None: ...

    def record_firing(self, name: str, due: float, task_id: str) -> None:
        """Remember that schedule *name* fired for *due* with task *task_id*."""

    # -- reads ----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None: ...

    def page(self, query: TaskQuery, limit: int, after: Task | None = None) -> list[Task]:
        """Tasks matching *query*, in its order (``query.sort``, ``query.descending``; newest
        first by default; see TaskSort for ties and absent times). *after* pages by cursor:
        only tasks after that one in the order, by its values as given (it may have changed
        or been deleted since: the listing goes on from where it was). A page walks an index,
        so one deep in a million tasks costs what the first does."""

    def list_json(self, query: TaskQuery, limit: int, offset: int) -> tuple[str, int]:
        """``page`` for the API, by offset: the tasks as the JSON text of an array's items
        (each as ``Task.to_json`` writes it, comma-separated), and how many that is."""

    def count(self, query: TaskQuery) -> int:
        """How many tasks match *query*; O(1) without a search or action filter."""

    def counts(self) -> dict[TaskStatus, int]:
        """Tasks in each status; O(1)."""

    def count_by_status(self, search: str | None = None) -> dict[TaskStatus, int]:
        """Tasks in each status matching *search* (``counts`` when there is none)."""

    def next_due(self, now: float) -> float | None:
        """The earliest ``run_after`` after *now* among queued tasks waiting for no other
        task; None when none waits."""

    def paused(self) -> bool: ...

    def schedule_states(self) -> dict[str, ScheduleState]: ...

    def nodes(self) -> list[NodeInfo]:
        """The instances using the database, oldest first, this one included."""

    def read_log(self, task_id: str, offset: int, limit: int) -> LogSlice:
        """At most *limit* bytes of the task's log from byte *offset* (of everything it ever
        logged; an offset before what is kept starts at the oldest byte kept). Empty when
        there is no log (yet)."""
