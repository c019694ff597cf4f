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
from dataclasses import dataclass
from typing import Protocol

from storage.models import Finish, Task, TaskQuery, TaskStatus


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``settle`` stored and claimed: each finished task as stored (None where that
    attempt was no longer running), and the tasks claimed, in the order they should run."""

    finished: list[Task | None]
    claimed: list[Task]


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

    def close(self) -> None:
        """Release every connection and lock; call once every thread using the store is
        done."""

    def announce(self, api_url: str | None) -> None:
        """Record this instance's API address, for a second instance's refusal message."""

    # -- writes ---------------------------------------------------------------------------

    def add(self, action: str, data_json: str, max_attempts: int, now: float) -> Task:
        """Store a new task as queued, due at once, and return it."""

    def add_many(
        self, items: Sequence[tuple[str, str]], max_attempts: int, now: float
    ) -> list[str]:
        """Store several (action, data_json) tasks in one commit; return their ids in order."""

    def settle(self, finishes: Sequence[Finish], claim: int, now: float) -> Settled:
        """Store how some attempts ended and claim up to *claim* due queued tasks, oldest
        first, in one commit.

        A claimed task becomes ``running`` with ``started_at`` = *now* and one more attempt
        counted; no task is claimed by two callers. Due: ``run_after`` <= *now*. Storing a
        finish is fenced by its task id and attempt number and requires the task to be
        ``running``.
        """

    def release(self, task_id: str, attempt: int, run_after: float, error: str | None
                ) -> Task | None:
        """Running attempt *attempt* → queued again, due at *run_after*, giving the attempt
        back (the task did not run, or its outcome could not be stored); *error*, if given,
        replaces the task's error. None if that attempt is no longer running."""

    def cancel_many(self, task_ids: Sequence[str], now: float) -> list[Task]:
        """Cancel those of *task_ids* whose status allows it (TaskStatus.can_cancel), in one
        commit; return them as stored."""

    def retry_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Queue again, with a fresh set of attempts and no result or error, those of
        *task_ids* whose status allows it (TaskStatus.can_retry), in one commit."""

    def shift_retry_times(self, seconds: float, after: float) -> int:
        """Move ``run_after`` of queued tasks due after *after* by *seconds* (the wall clock
        was set back); return how many moved."""

    def recover(self, now: float) -> int:
        """Make tasks whose runner is gone runnable again: back to queued with their
        interrupted attempt counted, or failed when that was their last attempt. Return how
        many. Call at start-up, before any worker of this instance claims."""

    # -- reads ----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None: ...

    def page(self, query: TaskQuery, limit: int, before_seq: int | None = None) -> list[Task]:
        """Tasks matching *query*, newest first; *before_seq* pages by cursor (only tasks
        older than the one with that ``seq``), which stays fast however deep the page."""

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
        """The earliest ``run_after`` after *now* among queued tasks; None when none waits."""
