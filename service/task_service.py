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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from service.actions import Action, ActionRegistry, RunContext, SimpleContext, default_registry
from service.errors import (
    ConflictError,
    InvalidTransitionError,
    TaskNotFoundError,
    ValidationError,
)
from service.events import EventKind, Listener, TaskEvent
from service.json_limits import may_be_unstorable, unstorable
from service.limits import (
    MAX_ACTION_LENGTH,
    MAX_DATA_BYTES,
    MAX_ERROR_CHARS,
    MAX_RESULT_BYTES,
)
from service.metrics import RateHistory
from service.progress import ProgressBoard
from service.run_context import TaskContext
from service.scheduling import check_options, request_hash
from storage import (
    CANCELLABLE,
    RETRYABLE,
    Added,
    Changes,
    DatabaseError,
    Finish,
    IdempotencyConflictError,
    LogSlice,
    NewTask,
    NodeInfo,
    Progress,
    Settled,
    Task,
    TaskQuery,
    TaskStatus,
    TaskStore,
    UnknownTasksError,
    describe_statuses,
    parse_order,
    parse_sort,
    parse_status,
)

log = logging.getLogger("taskdesk.service")

MAX_BACKOFF_SECONDS = 300.0
# A command's runner stops it within its timeout plus the kill grace; the watchdog waits this
# much longer before it gives up on the worker running it.
COMMAND_STOP_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a claimed task came to, not yet stored: *finish* says how to store it;
    *error_type* names the exception of a failed attempt (for the log)."""

    task: Task
    finish: Finish
    error_type: str = ""
    # Taskdesk is stopping and the action was asked to stop: hand the task back to the queue
    # (the attempt does not count) instead of storing *finish*.
    release: bool = False


# Made once: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON, refusing NaN and infinities (they are not JSON)."""
    return _ENCODER.encode(value)


class TaskService:
    def __init__(
        self,
        store: TaskStore,
        registry: ActionRegistry | None = None,
        *,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        task_timeout: float = 300.0,
        kill_grace: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.store = store
        self.registry = registry or default_registry()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.task_timeout = task_timeout
        self.kill_grace = kill_grace
        self.clock = clock
        self.rates = RateHistory()
        self.progress = ProgressBoard(self)
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        # The attempts running in this process, by task id: a cancel reaches them here.
        self._running: dict[str, TaskContext] = {}
        # Attempts claimed here and not started yet (a batch's later tasks, one in its
        # simulated work), by task id: a cancel meanwhile is kept in the context that
        # start_attempt then gives the action.
        self._claimed: dict[str, TaskContext] = {}
        # While settle() claims, one set per settle in flight: the ids asked to stop
        # meanwhile (committed after the claim, before the claimed tasks are known here).
        self._claiming: list[set[str]] = []
        self._running_lock = threading.Lock()
        # Other instances sharing the database: their changes become events here too.
        self._unwatch = store.watch(self._changed_elsewhere)

    def now(self) -> float:
        return self.clock()

    # -- change notification ------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call *listener* after every change; returns a function that unsubscribes it."""
        with self._listeners_lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners = [f for f in self._listeners if f is not listener]

        return unsubscribe

    def _emit(self, kind: EventKind, task: Task, count: int = 1,
              ids: tuple[str, ...] = ()) -> None:
        event = TaskEvent(kind, task, count, ids)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken subscriber must not undo a stored change
                log.exception("task event listener failed")

    def _changed_elsewhere(self, changes: Changes | None) -> None:
        """What other instances changed (on the store's listener thread): each task re-read
        and told as CHANGED_ELSEWHERE (CANCEL_REQUESTED when it is running and was asked to
        stop, so that whoever runs it here learns it), a pause or resume as PAUSED/RESUMED,
        and None (or a task deleted meanwhile) as one RESYNC."""
        try:
            if changes is None or changes.queue:
                if changes is None:
                    self._emit_queue(EventKind.RESYNC)
                self._emit_queue(EventKind.PAUSED if self.store.paused() else EventKind.RESUMED)
            if changes is None:
                self._stop_cancelled_here()
                return
            ids = list(dict.fromkeys(changes.task_ids))
            if not ids:
                return
            tasks = self.store.page(TaskQuery(ids=ids), len(ids))
            for task in tasks:
                asked = task.status == TaskStatus.RUNNING and task.cancel_requested
                if asked:  # if it runs here, its action is asked to stop
                    self.stop_running(task.id)
                self._emit(EventKind.CANCEL_REQUESTED if asked else EventKind.CHANGED_ELSEWHERE,
                           task)
            if len(tasks) < len(ids):  # deleted elsewhere: no task left to tell about
                self._emit_queue(EventKind.RESYNC)
        except DatabaseError as exc:  # the listener tells us again (None) once it is back
            log.debug("cannot re-read what another instance changed: %s", exc)

    def _stop_cancelled_here(self) -> None:
        """Ask the attempts held here whose task was asked to stop to do so: another
        instance may have asked while what it changed could not be named."""
        with self._running_lock:
            ids = list(dict.fromkeys([*self._running, *self._claimed]))
        if not ids:
            return
        for task in self.store.page(TaskQuery(ids=ids), len(ids)):
            if task.status == TaskStatus.RUNNING and task.cancel_requested:
                self.stop_running(task.id)

    def nodes(self) -> list[NodeInfo]:
        """The instances sharing the database (just this one on SQLite)."""
        return self.store.nodes()

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

    def submit(self, action: Any, data: Any = None, **options: Any) -> Task:
        """Validate and store one task as queued; the task is committed when this returns.
        *options*: those of ``accept``."""
        return self.accept(action, data, **options).task

    def accept(
        self,
        action: Any,
        data: Any = None,
        *,
        priority: Any = 0,
        delay: Any = None,
        run_at: Any = None,
        after: Any = None,
        idempotency_key: Any = None,
    ) -> Added:
        """Validate and store one task (see service/scheduling.py for the options). With an
        idempotency key already used for the same request, nothing is stored and the first
        task is returned (``created`` False); for another request, ValidationError's subclass
        ConflictError."""
        action, data_json = self.validate(action, data)
        now = self.now()
        options = check_options(now, priority=priority, delay=delay, run_at=run_at,
                                after=after, idempotency_key=idempotency_key)
        digest = None
        if options.idempotency_key is not None:
            digest = request_hash(action, data_json, options.priority, delay, run_at,
                                  options.after)
        new = NewTask(action, data_json, self.max_attempts, options.priority, options.run_after,
                      options.after, options.idempotency_key, digest)
        try:
            added = self.store.add(new, now)
        except UnknownTasksError as exc:
            raise ValidationError(str(exc)) from None
        except IdempotencyConflictError as exc:
            raise ConflictError(str(exc)) from None
        if added.created:
            # DEBUG: at INFO this line alone cost about a tenth of a POST's time under load.
            log.debug("task queued id=%s action=%s", added.task.id, added.task.action)
            self._emit(EventKind.SUBMITTED, added.task)
        return added

    def submit_many(self, action: Any, data: Any, copies: int, **options: Any) -> list[str]:
        """Store *copies* identical tasks in one commit; return their ids. *options*: those of
        ``accept`` but an idempotency key."""
        if copies < 1:
            raise ValidationError("copies must be at least 1")
        action, data_json = self.validate(action, data)
        now = self.now()
        checked = check_options(now, **options)
        if checked.idempotency_key is not None:
            raise ValidationError("copies of a task cannot share an idempotency key")
        new = NewTask(action, data_json, self.max_attempts, checked.priority, checked.run_after,
                      checked.after)
        try:
            ids = self.store.add_many(new, copies, now)
        except UnknownTasksError as exc:
            raise ValidationError(str(exc)) from None
        log.info("%d tasks queued action=%s", len(ids), action)
        # One event for the batch, carrying the newest task: subscribers re-read what they show.
        newest = self.store.get(ids[-1])
        if newest is not None:
            self._emit(EventKind.SUBMITTED_MANY, newest, len(ids), tuple(ids))
        return ids

    # -- reads ----------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    def find(self, task_id: str) -> Task | None:
        return self.store.get(task_id)

    def page(self, query: TaskQuery, limit: int = 200, after: Task | None = None
             ) -> list[Task]:
        """A page of tasks in the query's order, after the task *after* (the last of the
        previous page); no total (which would cost a full scan when searching), for views
        that load more as they scroll."""
        return self.store.page(query, limit, after)

    def list_json(
        self, status: str | None = None, action: str | None = None, limit: int = 100,
        offset: int = 0, *, scheduled: bool = False, sort: str | None = None,
        order: str | None = None,
    ) -> tuple[str, int, int]:
        """A page of tasks for the API, newest first or by *sort* (a TaskSort name) in
        *order* (asc or desc, the default): the tasks as the JSON text of an array's items,
        how many there are in it, and how many match in all. *scheduled*: only queued tasks
        not due yet. An unknown *status*, *sort* or *order* is a ValidationError naming the
        valid ones."""
        query = self.listing_query(status, action, scheduled=scheduled, sort=sort, order=order)
        texts, count = self.store.list_json(query, limit, offset)
        return texts, count, self.store.count(query)

    def listing_query(
        self, status: str | None = None, action: str | None = None, *,
        scheduled: bool = False, sort: str | None = None, order: str | None = None,
    ) -> TaskQuery:
        """The TaskQuery of a listing's parameters as a user gives them (see list_json); a
        ValidationError naming the valid values of a bad one."""
        try:
            return TaskQuery(status=parse_status(status), action=action,
                             scheduled_after=self.now() if scheduled else None,
                             sort=parse_sort(sort), descending=parse_order(order))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def iter_pages(self, query: TaskQuery, page_size: int = 500) -> Iterator[list[Task]]:
        """Every task matching *query*, in its order, a page at a time (keyset paging: each
        page costs what the first does, and only one page is held at a time). Tasks that
        change while it runs show as they are when their page is read."""
        after: Task | None = None
        while True:
            tasks = self.store.page(query, page_size, after)
            if tasks:
                yield tasks
            if len(tasks) < page_size:
                return
            after = tasks[-1]

    def count_by_status(self, search: str | None = None) -> dict[TaskStatus, int]:
        return self.store.count_by_status(search)

    def counts(self) -> dict[TaskStatus, int]:
        return self.store.counts()

    # -- user actions on a task ----------------------------------------------------------------

    def cancel(self, task_id: str) -> Task:
        """Cancel a queued task, or ask a running one to stop (it ends cancelled when its
        attempt ends); InvalidTransitionError when its status allows neither."""
        changed = self.cancel_many([task_id])
        mine = [t for t in changed if t.id == task_id]
        if not mine:
            current = self.get(task_id)
            if current.status == TaskStatus.RUNNING and current.cancel_requested:
                return current  # asked already: the same answer again
            raise InvalidTransitionError(task_id, current.status, "cancel",
                                         f"only {describe_statuses(CANCELLABLE)} tasks can be")
        return mine[0]

    def cancel_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Cancel those of *task_ids* whose status allows it (one commit); return every task
        changed: those cancelled, those asked to stop, and those waiting for a cancelled one
        (cancelled with it)."""
        changed = self.store.cancel_many(task_ids, self.now())
        for task in changed:
            if task.status == TaskStatus.RUNNING:
                log.info("task cancel requested id=%s action=%s", task.id, task.action)
                self.stop_running(task.id)
                self._emit(EventKind.CANCEL_REQUESTED, task)
            else:
                log.info("task cancelled id=%s action=%s", task.id, task.action)
                self._emit(EventKind.CANCELLED, task)
        return changed

    def retry(self, task_id: str) -> Task:
        tasks = self.retry_many([task_id])
        if not tasks:
            current = self.get(task_id)
            if current.status.can_retry:
                raise InvalidTransitionError(task_id, current.status, "retry",
                                             self._blocking(current))
            raise InvalidTransitionError(task_id, current.status, "retry",
                                         f"only {describe_statuses(RETRYABLE)} tasks can be")
        return tasks[0]

    def _blocking(self, task: Task) -> str:
        """Why a retryable task was not retried: a task it waits for failed or was cancelled."""
        for dep in self.store.page(TaskQuery(ids=list(task.after)), len(task.after) or 1):
            if dep.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                return f"it waits for task {dep.id}, which is {dep.status}; retry that first"
        return "it changed meanwhile"

    def retry_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Queue again those of *task_ids* whose status allows it (one commit)."""
        tasks = self.store.retry_many(task_ids, self.now())
        for task in tasks:
            log.info("task retried id=%s action=%s", task.id, task.action)
            self._emit(EventKind.RETRIED, task)
        return tasks

    def delete(self, task_id: str) -> Task:
        """Delete a finished task and its log; InvalidTransitionError for a queued or running
        one."""
        current = self.get(task_id)
        deleted = self.delete_many([task_id])
        if not deleted:
            raise InvalidTransitionError(task_id, self.get(task_id).status, "delete",
                                         "only finished tasks can be")
        return deleted[0] if deleted else current

    def delete_many(self, task_ids: Sequence[str]) -> list[Task]:
        """Delete those of *task_ids* that are finished (one commit); return them."""
        deleted = self.store.delete_many(task_ids)
        for task in deleted:
            log.info("task deleted id=%s action=%s", task.id, task.action)
            self._emit(EventKind.DELETED, task)
        return deleted

    def purge(self, completed_before: float, failed_before: float, limit: int) -> int:
        """Delete up to *limit* finished tasks older than the given times; how many."""
        deleted = self.store.purge(completed_before, failed_before, limit)
        for task in deleted:
            self._emit(EventKind.DELETED, task)
        return len(deleted)

    # -- the queue as a whole ------------------------------------------------------------------

    def paused(self) -> bool:
        return self.store.paused()

    def set_paused(self, paused: bool) -> None:
        """Pause (running tasks finish, nothing new starts, submissions are accepted) or
        resume the queue; the state survives a restart."""
        self.store.set_paused(paused)
        log.warning("queue paused") if paused else log.info("queue resumed")
        self._emit_queue(EventKind.RESUMED if not paused else EventKind.PAUSED)

    def _emit_queue(self, kind: EventKind) -> None:
        event = TaskEvent(kind, None)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("task event listener failed")

    def recover(self) -> int:
        """Make tasks whose runner is gone runnable again (start-up, before workers run)."""
        n = self.store.recover(self.now())
        if n:
            log.warning("%d task(s) were running when Taskdesk last stopped; re-queued", n)
        return n

    # -- worker side ----------------------------------------------------------------------------

    def action_of(self, task: Task) -> Action | None:
        """The action that runs *task* (None: an unknown name while unknown names are
        refused)."""
        try:
            return self.registry.resolve(task.action)
        except ValidationError:
            return None

    def time_limit(self, task: Task) -> float:
        """How long an attempt of *task* may run before the watchdog ends it: the action's
        own timeout or --task-timeout; for a command, plus the time its runner takes to stop
        it (SIGTERM, the grace, SIGKILL), so that the runner's own timeout acts first."""
        action = self.action_of(task)
        limit = action.timeout if action and action.timeout is not None else self.task_timeout
        if action is not None and action.kind == "command":
            limit += self.kill_grace + COMMAND_STOP_MARGIN
        return limit

    def start_attempt(self, task: Task) -> TaskContext:
        """The context a claimed task's action runs with, known to cancel until it ends."""
        with self._running_lock:
            ctx = self._claimed.pop(task.id, None)
            if ctx is None or ctx.attempt != task.attempts:
                ctx = TaskContext(task, self.progress, self.store.append_log)
            elif ctx.cancelled.is_set():  # asked to stop before it started: its grace
                ctx.cancelled_at = time.monotonic()  # to stop runs from now
            self._running[task.id] = ctx
        if task.cancel_requested:
            ctx.cancel()
        return ctx

    def end_attempt(self, ctx: TaskContext) -> None:
        with self._running_lock:
            if self._running.get(ctx.task_id) is ctx:
                del self._running[ctx.task_id]

    def running_context(self, task_id: str) -> TaskContext | None:
        with self._running_lock:
            return self._running.get(task_id)

    def stop_running(self, task_id: str | None = None, *, stopping: bool = False) -> None:
        """Ask the running attempt of *task_id* here (every one, when None) to stop;
        *stopping*: because Taskdesk stops, so the task goes back to the queue."""
        with self._running_lock:
            if task_id is None:
                contexts = [*self._running.values(), *self._claimed.values()]
            else:
                found = (self._running.get(task_id), self._claimed.get(task_id))
                contexts = [ctx for ctx in found if ctx is not None]
                for asked in self._claiming:  # it may be among the tasks being claimed
                    asked.add(task_id)
        for ctx in contexts:
            ctx.cancel(stopping=stopping)

    def run(self, task: Task, ctx: RunContext | None = None) -> Outcome:
        """Run a claimed task's action with *ctx* (a plain one when None); what it came to is
        stored later, by settle()."""
        ctx = ctx if ctx is not None else SimpleContext(task.id, task.attempts)
        action = self.action_of(task)
        if action is None:
            error = ValidationError(f"unknown action {task.action!r}")
            return self._attempt_failed(task, error, retry=False)
        try:
            result = action.run(task.data, ctx)
        except BaseException as exc:  # even sys.exit() in an action: a failure, not a dead worker
            return self._ended_early(task, ctx, exc)
        finally:
            self.progress.flush(task.id)  # its last report, before the outcome is stored
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
        finish = Finish(task.id, task.attempts, TaskStatus.COMPLETED, result_json, self.now())
        return Outcome(task, finish)

    def _ended_early(self, task: Task, ctx: RunContext, exc: BaseException) -> Outcome:
        """An action that raised. Once asked to stop, whatever it raised (a plugin cannot
        import ActionCancelled) means it stopped: back to the queue when Taskdesk stops, else
        a cancelled attempt (the store ends the task cancelled, its cancel being requested)."""
        if ctx.cancelled.is_set():
            if getattr(ctx, "stopping", False):
                finish = Finish(task.id, task.attempts, TaskStatus.QUEUED, "", self.now())
                return Outcome(task, finish, type(exc).__name__, release=True)
            return self._attempt_failed(task, exc, retry=False)
        return self._attempt_failed(task, exc, retry=True)

    def read_log(self, task_id: str, offset: int, limit: int) -> LogSlice:
        """Up to *limit* bytes of a task's log from byte *offset*; TaskNotFoundError for an
        unknown task (a task with no log has an empty one)."""
        if self.store.get(task_id) is None:
            raise TaskNotFoundError(task_id)
        return self.store.read_log(task_id, offset, limit)

    def timed_out(self, task: Task, seconds: float) -> Outcome:
        """The outcome of an attempt whose action ran past the task timeout: failed, retried
        while attempts remain (the next try may be quicker)."""
        error = TimeoutError(f"the action did not finish within {seconds:g} s")
        return self._attempt_failed(task, error, retry=True)

    def settle(self, outcomes: Sequence[Outcome], claim: int) -> Settled:
        """Store *outcomes* and claim up to *claim* due tasks, in one commit.

        Returns the finished tasks as stored (None for one whose attempt was no longer
        running, e.g. after a timeout ended it) and the claimed tasks, in the order to run.
        """
        asked: set[str] = set()
        with self._running_lock:
            self._claiming.append(asked)
        try:
            settled = self.store.settle([o.finish for o in outcomes], claim, self.now())
        except BaseException:
            self._hold_claimed([], outcomes, asked)
            raise
        self._hold_claimed(settled.claimed, outcomes, asked)
        for outcome, task in zip(outcomes, settled.finished, strict=True):
            self._report(outcome, task)
        self._report_cascade(settled.cascaded)
        for task in settled.claimed:
            log.info("processing task id=%s action=%s attempt=%d/%d",
                     task.id, task.action, task.attempts, task.max_attempts)
            self._emit(EventKind.STARTED, task)
        return settled

    def _hold_claimed(self, claimed: Sequence[Task], outcomes: Sequence[Outcome],
                      asked: set[str]) -> None:
        """Know *claimed* until they start (start_attempt) or are handed back (release);
        those asked to stop already, by *asked* or in the store, are cancelled at once."""
        cancelled = []
        with self._running_lock:  # at once: no stop request falls between the two
            self._claiming = [s for s in self._claiming if s is not asked]
            for outcome in outcomes:  # stored without being started (tests do that)
                self._forget_claimed(outcome.task)
            for task in claimed:
                ctx = TaskContext(task, self.progress, self.store.append_log)
                self._claimed[task.id] = ctx
                if task.cancel_requested or task.id in asked:
                    cancelled.append(ctx)
        for ctx in cancelled:
            ctx.cancel()

    def _forget_claimed(self, task: Task) -> None:
        """(Under the lock.) *task*'s attempt will not start here."""
        ctx = self._claimed.get(task.id)
        if ctx is not None and ctx.attempt == task.attempts:
            del self._claimed[task.id]

    def set_progress(self, reports: Sequence[Progress]) -> list[Task]:
        """Store how far running attempts have come (one commit) and tell subscribers."""
        updated = self.store.set_progress(reports)
        for task in updated:
            self._emit(EventKind.PROGRESS, task)
        return updated

    def next_due(self) -> float | None:
        """When the next queued task that is not due yet becomes due (None: none waits)."""
        return self.store.next_due(self.now())

    def _report_cascade(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            if task.status == TaskStatus.CANCELLED:
                log.info("task cancelled id=%s action=%s: %s", task.id, task.action, task.error)
                self._emit(EventKind.CANCELLED, task)
            elif task.waiting == 0:
                self._emit(EventKind.READY, task)

    def _report(self, outcome: Outcome, task: Task | None) -> None:
        if task is None:
            log.warning("task %s was no longer running when its attempt ended; outcome dropped",
                        outcome.task.id)
            return
        if task.status == TaskStatus.CANCELLED:  # asked to stop while it ran
            log.info("task cancelled id=%s action=%s", task.id, task.action)
            self._emit(EventKind.CANCELLED, task)
            return
        if task.status == TaskStatus.COMPLETED:
            log.info("task completed id=%s action=%s", task.id, task.action)
            log.debug("task result id=%s result=%s", task.id, outcome.finish.text)
            self.rates.record(completed=1)
            self._emit(EventKind.COMPLETED, task)
            return
        # The error text can quote task data, which is logged only at DEBUG.
        if task.status == TaskStatus.FAILED:
            log.warning("task failed id=%s action=%s attempts=%d error_type=%s",
                        task.id, task.action, task.attempts, outcome.error_type)
            self.rates.record(failed=1)
        else:
            log.warning("task attempt failed id=%s action=%s attempt=%d/%d retry_in=%.1fs "
                        "error_type=%s", task.id, task.action, task.attempts, task.max_attempts,
                        outcome.finish.when - self.now(), outcome.error_type)
        log.debug("task error id=%s error=%s", task.id, outcome.finish.text)
        self._emit(EventKind.FAILED if task.status == TaskStatus.FAILED else EventKind.REQUEUED,
                   task)

    def release(self, task: Task, error: BaseException | None = None) -> Task | None:
        """Give a claimed task back to the queue without counting the attempt.

        For a worker that stops before running the action (*error* None: due at once), or that
        could not store the outcome (*error* set: due after a backoff). Neither is the task's
        fault, so neither uses up one of its attempts.
        """
        with self._running_lock:
            self._forget_claimed(task)
        run_after = self.now() + (self.backoff(max(1, task.attempts)) if error else 0.0)
        message = None if error is None else f"cannot store outcome: {_describe(error)}"
        released = self.store.release(task.id, task.attempts, run_after, message)
        if released is not None:
            log.info("task released id=%s action=%s", task.id, task.action)
            self._emit(EventKind.RELEASED, released)
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
            finish = Finish(task.id, task.attempts, TaskStatus.FAILED, error, self.now())
            return Outcome(task, finish, kind)
        run_after = self.now() + self.backoff(task.attempts)
        return Outcome(task, Finish(task.id, task.attempts, TaskStatus.QUEUED, error, run_after),
                       kind)


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
