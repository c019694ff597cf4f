"""TaskService: the one entry point the window, the API and the workers use.

It validates submissions, stores every accepted task as ``queued`` before returning (so the
caller can answer 202 knowing the task is on disk), runs a claimed task's action, records the
outcome and tells subscribers what changed. Subscribers are plain callables invoked on the
thread that made the change; they must be quick and thread-safe (the worker pool sets an
event, the window appends to a queue it drains on the GUI thread). The service itself uses no
Qt, so the API thread never touches a Qt object.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.actions import ActionRegistry, SimpleContext, default_registry
from service.errors import InvalidTransitionError, TaskNotFoundError, ValidationError
from service.json_limits import may_be_unstorable, unstorable
from service.metrics import RateHistory
from storage import STATUSES, Finish, Task, TaskStore

log = logging.getLogger("taskdesk.service")

MAX_ACTION_LENGTH = 100
MAX_DATA_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 1024 * 1024
MAX_BACKOFF_SECONDS = 300.0
MAX_ERROR_CHARS = 4096


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """What happened to a task: submitted, submitted_many (a batch; ``task`` is its newest),
    started, completed, requeued, released, failed, cancelled, retried. ``task`` is the task
    as stored right after the change."""

    kind: str
    task: Task


Listener = Callable[[TaskEvent], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a claimed task came to, not yet stored: *finish* says how to store it;
    *error_type* names the exception of a failed attempt (for the log)."""

    task: Task
    finish: Finish
    error_type: str = ""


def dumps(value: Any) -> str:
    """Compact JSON, refusing NaN and infinities (they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class TaskService:
    def __init__(
        self,
        store: TaskStore,
        registry: ActionRegistry | None = None,
        *,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.store = store
        self.registry = registry or default_registry()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.clock = clock
        self.rates = RateHistory()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    def now(self) -> float:
        """The clock, kept to the 15 significant digits JSON shows of a time (10 µs today),
        so that a time read back through the API equals the one stored."""
        return float(format(self.clock(), ".15g"))

    # -- change notification ------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call *listener* after every change; returns a function that unsubscribes it."""
        with self._listeners_lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners = [f for f in self._listeners if f is not listener]

        return unsubscribe

    def _emit(self, kind: str, task: Task) -> None:
        for listener in self._listeners:
            try:
                listener(TaskEvent(kind, task))
            except Exception:  # a broken subscriber must not undo a stored change
                log.exception("task event listener failed")

    # -- submissions --------------------------------------------------------------------------

    def validate(self, action: Any, data: Any) -> tuple[str, str]:
        """Check a submission; return (action, data as JSON text) or raise ValidationError."""
        if action is None or action == "":
            raise ValidationError("action required")
        if not isinstance(action, str):
            raise ValidationError("action must be a string")
        if not action.strip():
            raise ValidationError("action required")
        if len(action) > MAX_ACTION_LENGTH:
            raise ValidationError(f"action must be at most {MAX_ACTION_LENGTH} characters")
        if any(not ch.isprintable() for ch in action):
            raise ValidationError("action must not contain control characters")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValidationError("data must be a JSON object")
        self.registry.validate(action, data)
        try:
            data_json = dumps(data)
            size = len(data_json.encode())  # refuses lone surrogates
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValidationError(f"data is not valid JSON: {exc}") from exc
        if may_be_unstorable(data_json):
            problem = unstorable(data)
            if problem is not None:
                raise ValidationError(f"data cannot be stored: {problem}")
        if size > MAX_DATA_BYTES:
            raise ValidationError(f"data must be at most {MAX_DATA_BYTES} bytes of JSON")
        return action, data_json

    def submit(self, action: Any, data: Any = None) -> Task:
        """Validate and store one task as queued; the task is on disk when this returns."""
        action, data_json = self.validate(action, data)
        task = self.store.add(action, data_json, self.max_attempts, self.now())
        # DEBUG: at INFO this line alone cost about a tenth of a POST's time under load.
        log.debug("task queued id=%s action=%s", task.id, task.action)
        self._emit("submitted", task)
        return task

    def submit_many(self, action: Any, data: Any, copies: int) -> list[str]:
        """Store *copies* identical tasks in one transaction; return their ids."""
        if copies < 1:
            raise ValidationError("copies must be at least 1")
        action, data_json = self.validate(action, data)
        ids = self.store.add_many([(action, data_json)] * copies, self.max_attempts, self.now())
        log.info("%d tasks queued action=%s", len(ids), action)
        # One event for the batch, carrying the newest task: subscribers re-read what they show.
        newest = self.store.get(ids[-1])
        if newest is not None:
            self._emit("submitted_many", newest)
        return ids

    # -- reads ----------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    def find(self, task_id: str) -> Task | None:
        return self.store.get(task_id)

    def page(
        self,
        status: str | None = None,
        limit: int = 200,
        *,
        search: str | None = None,
        before_seq: int | None = None,
    ) -> list[Task]:
        """A page of tasks, newest first, older than *before_seq*; no total (which would cost
        a full scan when searching), for views that load more as they scroll."""
        return self.store.list_tasks(status, None, limit, search=search, before_seq=before_seq)

    def list_json(
        self, status: str | None = None, action: str | None = None, limit: int = 100,
        offset: int = 0,
    ) -> tuple[str, int, int]:
        """A page of tasks, newest first, for the API: the tasks as the JSON text of an array's
        items (written by SQLite), how many there are in it, and how many match in all."""
        _check_status(status)
        texts, count = self.store.list_json(status, action, limit, offset)
        return texts, count, self.store.count(status, action)

    def count_by_status(self, search: str | None = None) -> dict[str, int]:
        return self.store.count_by_status(search=search)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    # -- user actions on a task ----------------------------------------------------------------

    def cancel(self, task_id: str) -> Task:
        task = self.store.cancel(task_id, self.now())
        if task is None:
            current = self.get(task_id)
            raise InvalidTransitionError(task_id, current.status, "cancel", "queued tasks can be")
        log.info("task cancelled id=%s action=%s", task.id, task.action)
        self._emit("cancelled", task)
        return task

    def cancel_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Cancel those of *task_ids* that are queued (one write); return the cancelled ones."""
        tasks = self.store.cancel_many(task_ids, self.now())
        for task in tasks:
            log.info("task cancelled id=%s action=%s", task.id, task.action)
            self._emit("cancelled", task)
        return tasks

    def retry_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Queue again those of *task_ids* that are failed or cancelled (one write)."""
        tasks = self.store.retry_many(task_ids)
        for task in tasks:
            log.info("task retried id=%s action=%s", task.id, task.action)
            self._emit("retried", task)
        return tasks

    def retry(self, task_id: str) -> Task:
        task = self.store.retry(task_id)
        if task is None:
            current = self.get(task_id)
            raise InvalidTransitionError(
                task_id, current.status, "retry", "failed or cancelled tasks can be"
            )
        log.info("task retried id=%s action=%s", task.id, task.action)
        self._emit("retried", task)
        return task

    def recover(self) -> int:
        """Put tasks a stopped process left running back in the queue (start-up only)."""
        n = self.store.recover_running(self.now())
        if n:
            log.warning("%d task(s) were running when Taskdesk last stopped; re-queued", n)
        return n

    # -- worker side ----------------------------------------------------------------------------

    def claim(self, task_id: str) -> Task | None:
        """Claim a queued task for a worker; None if it was cancelled or taken meanwhile."""
        claimed = self.settle([], [task_id])[1]
        return claimed[0] if claimed else None

    def execute(self, task: Task) -> Task | None:
        """Run a claimed task's action and store the outcome; returns the stored task."""
        return self.settle([self.run(task)], [])[0][0]

    def run(self, task: Task) -> Outcome:
        """Run a claimed task's action; what it came to is stored later, by settle()."""
        try:
            action = self.registry.resolve(task.action)
            result = action.run(task.data, SimpleContext(task.id, task.attempts))
        except BaseException as exc:  # even sys.exit() in an action: a failure, not a dead worker
            return self._attempt_failed(task, exc, retry=True)
        try:
            result_json = dumps(result)
            if len(result_json.encode()) > MAX_RESULT_BYTES:
                raise ValueError(f"the result is larger than {MAX_RESULT_BYTES} bytes")
            if may_be_unstorable(result_json):
                problem = unstorable(result)
                if problem is not None:
                    raise ValueError(problem)
        except Exception as exc:  # whatever the result does while encoded, it is its fault
            # The same input gives the same result: trying again cannot help.
            return self._attempt_failed(task, exc, retry=False, prefix="cannot store result: ")
        return Outcome(task, Finish(task.id, "completed", result_json, self.now()))

    def timed_out(self, task: Task, seconds: float) -> Outcome:
        """The outcome of an attempt whose action ran past the task timeout: failed, retried
        while attempts remain (the next try may be quicker)."""
        error = TimeoutError(f"the action did not finish within {seconds:g} s")
        return self._attempt_failed(task, error, retry=True)

    def settle(
        self, outcomes: Sequence[Outcome], claim_ids: Sequence[str]
    ) -> tuple[list[Task | None], list[Task]]:
        """Store *outcomes* and claim those of *claim_ids* still queued, in one write.

        Returns the finished tasks as stored (None for one that was no longer running, e.g.
        after a restart recovered it) and the claimed tasks, oldest first.
        """
        stored, claimed = self.store.settle(
            [o.finish for o in outcomes], claim_ids, self.now()
        )
        for outcome, task in zip(outcomes, stored, strict=True):
            self._report(outcome, task)
        for task in claimed:
            log.info("processing task id=%s action=%s attempt=%d/%d",
                     task.id, task.action, task.attempts, task.max_attempts)
            self._emit("started", task)
        return stored, claimed

    def _report(self, outcome: Outcome, task: Task | None) -> None:
        if task is None:
            log.warning("task %s was no longer running when its attempt ended; outcome dropped",
                        outcome.task.id)
            return
        if task.status == "completed":
            log.info("task completed id=%s action=%s", task.id, task.action)
            log.debug("task result id=%s result=%s", task.id, outcome.finish.text)
            self.rates.record(completed=1)
            self._emit("completed", task)
            return
        # The error text can quote task data, which is logged only at DEBUG.
        if task.status == "failed":
            log.warning("task failed id=%s action=%s attempts=%d error_type=%s",
                        task.id, task.action, task.attempts, outcome.error_type)
            self.rates.record(failed=1)
        else:
            log.warning("task attempt failed id=%s action=%s attempt=%d/%d retry_in=%.1fs "
                        "error_type=%s", task.id, task.action, task.attempts, task.max_attempts,
                        outcome.finish.when - self.now(), outcome.error_type)
        log.debug("task error id=%s error=%s", task.id, outcome.finish.text)
        self._emit(task.status if task.status == "failed" else "requeued", task)

    def release(self, task: Task, error: BaseException | None = None) -> Task | None:
        """Give a claimed task back to the queue without counting the attempt.

        For a worker that stops before running the action (*error* None: due at once), or that
        could not store the outcome (*error* set: due after a backoff). Neither is the task's
        fault, so neither uses up one of its attempts.
        """
        run_after = self.now() + (self.backoff(max(1, task.attempts)) if error else 0.0)
        message = None if error is None else f"cannot store outcome: {_describe(error)}"
        released = self.store.release(task.id, run_after, message)
        if released is not None:
            log.info("task released id=%s action=%s", task.id, task.action)
            self._emit("released", released)
        return released

    def shift_retries(self, seconds: float) -> None:
        """Move pending retry times by *seconds* (negative: earlier), after the wall clock was
        set back, so that retries are not held for as long as the clock went back."""
        n = self.store.shift_retry_times(seconds, self.now())
        if n:
            log.warning("the clock was set back %.0f s; %d pending retr%s moved with it",
                        -seconds, n, "y" if n == 1 else "ies")

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before attempt number ``attempts + 1``: base · 2^(attempts-1)."""
        delay = self.backoff_base * math.pow(2, max(0, attempts - 1))
        return min(delay, MAX_BACKOFF_SECONDS)

    def _attempt_failed(
        self, task: Task, exc: BaseException, *, retry: bool, prefix: str = ""
    ) -> Outcome:
        error = prefix + _describe(exc)
        kind = type(exc).__name__
        if not retry or task.attempts >= task.max_attempts:
            return Outcome(task, Finish(task.id, "failed", error, self.now()), kind)
        run_after = self.now() + self.backoff(task.attempts)
        return Outcome(task, Finish(task.id, "queued", error, run_after), kind)


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise ValidationError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")


def _describe(exc: BaseException) -> str:
    """An exception as storable text: never raises, valid UTF-8, at most MAX_ERROR_CHARS."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a __str__ that raises
        text = f"{type(exc).__name__} (its message cannot be shown)"
    # Lone surrogates cannot be written to SQLite: keep them visible as \udxxx escapes.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_CHARS:
        cut = len(text) - MAX_ERROR_CHARS
        text = f"{text[:MAX_ERROR_CHARS]}… ({cut:,} more characters)"
    return text
