"""TaskService: validation before anything is written, outcomes, retries with backoff."""

from __future__ import annotations

import re
from typing import Any

import pytest

from service.actions import ActionRegistry, default_registry
from service.errors import InvalidTransitionError, TaskNotFoundError, ValidationError
from service.events import TaskEvent
from service.task_service import TaskService
from storage import StorageUnavailableError, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.action_helpers import python_action
from tests.conftest import claim_next, run_claimed


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def flaky_registry(failures: int) -> ActionRegistry:
    """A registry whose `flaky` action raises *failures* times, then succeeds."""
    registry = default_registry()
    calls = {"n": 0}

    def flaky(data: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise RuntimeError(f"flaky failure {calls['n']}")
        return {"output": "ok"}

    registry.register(python_action("flaky", flaky, lambda data: None, "fails, then succeeds"))
    return registry


@pytest.mark.parametrize(
    ("action", "data", "message"),
    [
        (None, {}, "action required"),
        ("", {}, "action required"),
        ("   ", {}, "action required"),
        (42, {}, "action must be a string"),
        ("x" * 101, {}, "at most 100"),
        ("bad\naction", {}, "control characters"),
        ("x", [1, 2], "data must be a JSON object"),
        ("x", "text", "data must be a JSON object"),
        ("uppercase", {"text": 5}, "data.text: 5 is not of type 'string'"),
        ("sum", {"numbers": "1,2"}, "data.numbers: '1,2' is not of type 'array'"),
        ("sum", {"numbers": [1, "2"]}, "data.numbers[1]: '2' is not of type 'number'"),
        ("sum", {"numbers": [1, True]}, "data.numbers[1]: True is not of type 'number'"),
        ("sum", {"numbers": [1e308, 1e308]}, "too large"),
        ("x", {"v": float("nan")}, "not valid JSON"),
    ],
)
def test_invalid_submissions_are_rejected_and_nothing_is_written(
    service: TaskService, store: SqliteTaskStore, action: Any, data: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        service.submit(action, data)
    with pytest.raises(ValidationError):
        service.submit_many(action, data, 3)
    assert store.count(TaskQuery()) == 0


def test_submit_stores_queued_and_tells_subscribers(
    service: TaskService, store: SqliteTaskStore
) -> None:
    events: list[TaskEvent] = []
    unsubscribe = service.subscribe(events.append)
    task = service.submit("uppercase", {"text": "hello world"})
    assert store.get(task.id) == task and task.status == "queued"
    assert [(e.kind, e.task and e.task.id) for e in events] == [("submitted", task.id)]
    unsubscribe()
    service.submit("sum")
    assert len(events) == 1


def test_missing_data_defaults_to_empty_object(service: TaskService) -> None:
    assert service.submit("sum").data == {}
    assert service.submit("sum", None).data == {}


def test_execute_runs_the_tutorial_actions(service: TaskService) -> None:
    cases = [
        ("uppercase", {"text": "hello world"}, {"output": "HELLO WORLD"}),
        ("uppercase", {}, {"output": ""}),
        ("sum", {"numbers": [1, 2, 3]}, {"output": 6}),
        ("sum", {"numbers": [0.1, 0.2]}, {"output": 0.30000000000000004}),
        ("sum", {}, {"output": 0}),
        ("anything-else", {"a": 1}, {"output": "processed"}),
    ]
    for action, data, expected in cases:
        service.submit(action, data)
        claimed = claim_next(service)
        assert claimed is not None
        done = run_claimed(service, claimed)
        assert done is not None and (done.status, done.result) == ("completed", expected)


def test_failed_attempts_back_off_exponentially_then_succeed(store: SqliteTaskStore) -> None:
    clock = FakeClock()
    service = TaskService(store, flaky_registry(2), max_attempts=3, backoff_base=2.0, clock=clock)
    kinds: list[str] = []
    service.subscribe(lambda e: kinds.append(e.kind))
    service.submit("flaky")

    first = claim_next(service)
    assert first is not None
    after_first = run_claimed(service, first)
    assert after_first is not None
    assert (after_first.status, after_first.attempts) == ("queued", 1)
    assert after_first.error == "RuntimeError: flaky failure 1"
    assert after_first.run_after == clock.now + 2.0  # base
    assert claim_next(service) is None  # not due during the backoff
    assert service.next_due() == clock.now + 2.0

    clock.now += 2.0
    second = claim_next(service)
    assert second is not None
    after_second = run_claimed(service, second)
    assert after_second is not None and after_second.run_after == clock.now + 4.0  # doubled

    clock.now += 4.0
    third = claim_next(service)
    assert third is not None
    done = run_claimed(service, third)
    assert done is not None
    assert (done.status, done.attempts, done.result, done.error) == (
        "completed", 3, {"output": "ok"}, None)
    assert kinds == ["submitted", "started", "requeued", "started", "requeued", "started",
                     "completed"]


def test_max_attempts_reached_means_failed_with_the_error(store: SqliteTaskStore) -> None:
    service = TaskService(store, flaky_registry(10), max_attempts=2, backoff_base=0)
    task = service.submit("flaky")
    for _ in range(2):
        claimed = claim_next(service)
        assert claimed is not None
        run_claimed(service, claimed)
    failed = service.get(task.id)
    assert (failed.status, failed.attempts, failed.error) == (
        "failed", 2, "RuntimeError: flaky failure 2")
    assert failed.processed_at is not None
    assert claim_next(service) is None


def test_backoff_formula_is_capped(service: TaskService) -> None:
    service.backoff_base = 1.5
    assert [service.backoff(n) for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, 12.0]
    assert service.backoff(50) == 300.0


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"bad": object()}, "TypeError"),
        ({"x": float("inf")}, "ValueError"),
        ("x" * (1024 * 1024 + 1), "larger than"),
    ],
)
def test_results_that_cannot_be_stored_fail_the_attempt(
    store: SqliteTaskStore, result: Any, error: str
) -> None:
    registry = default_registry()
    registry.register(python_action("odd", lambda data: result, lambda data: None, "odd results"))
    service = TaskService(store, registry, max_attempts=3)
    task = service.submit("odd")
    claimed = claim_next(service)
    assert claimed is not None
    run_claimed(service, claimed)
    stored = service.get(task.id)
    assert stored.status == "failed" and stored.error is not None and error in stored.error
    # At once, attempts left or not: the same data gives the same result, so a retry cannot help.
    assert stored.attempts == 1


def test_cancel_and_retry_rules(service: TaskService) -> None:
    task = service.submit("x")
    with pytest.raises(InvalidTransitionError, match="only failed or cancelled"):
        service.retry(task.id)
    assert service.cancel(task.id).status == "cancelled"
    with pytest.raises(InvalidTransitionError, match="it is cancelled"):
        service.cancel(task.id)
    assert service.retry(task.id).status == "queued"
    with pytest.raises(TaskNotFoundError):
        service.cancel("missing")
    with pytest.raises(TaskNotFoundError):
        service.retry("missing")
    with pytest.raises(TaskNotFoundError):
        service.get("missing")


def test_list_rejects_unknown_status(service: TaskService) -> None:
    with pytest.raises(ValidationError, match="valid: queued, running"):
        service.list_json("done")


def test_submit_many_stores_all_in_one_go(service: TaskService, store: SqliteTaskStore) -> None:
    ids = service.submit_many("sum", {"numbers": [1]}, 50)
    assert len(set(ids)) == 50 and store.count(TaskQuery(status=TaskStatus.QUEUED)) == 50
    with pytest.raises(ValidationError):
        service.submit_many("sum", {}, 0)


def test_a_task_whose_outcome_could_not_be_stored_is_given_back_after_a_backoff(
    store: SqliteTaskStore,
) -> None:
    # Not the task's fault (disk full, database locked): its attempt is given back, but it
    # waits a backoff before running again, rather than spinning on a database that is not
    # ready, and its error says why it is queued again.
    clock = FakeClock()
    service = TaskService(store, max_attempts=3, backoff_base=2.0, clock=clock)
    task = service.submit("x")
    claimed = claim_next(service)
    assert claimed is not None
    full = StorageUnavailableError("cannot write to database x.db: database or disk is full")
    released = service.release(claimed, full)
    assert released is not None
    assert (released.status, released.attempts, released.started_at) == ("queued", 0, None)
    assert released.run_after == clock.now + 2.0
    assert released.error == ("cannot store outcome: StorageUnavailableError: cannot write to "
                              "database x.db: database or disk is full")
    assert claim_next(service) is None  # not due during the backoff

    # A worker that stops before running a task gives it back due at once, its error kept.
    clock.now += 2.0
    again = claim_next(service)
    assert again is not None and again.id == task.id
    back = service.release(again)
    assert back is not None
    assert (back.attempts, back.run_after, back.error) == (0, clock.now, released.error)


def test_an_attempt_that_timed_out_is_retried_while_attempts_remain(
    store: SqliteTaskStore,
) -> None:
    # The watchdog ends an action that runs past --task-timeout with this outcome: a failed
    # attempt like any other, retried after its backoff (the next try may be quicker).
    clock = FakeClock()
    service = TaskService(store, max_attempts=2, backoff_base=1.0, clock=clock)
    task = service.submit("x")
    first = claim_next(service)
    assert first is not None
    after = service.settle([service.timed_out(first, 30)], 0).finished[0]
    assert after is not None
    assert (after.status, after.attempts, after.run_after) == ("queued", 1, clock.now + 1.0)
    assert after.error == "TimeoutError: the action did not finish within 30 s"
    clock.now += 1.0
    second = claim_next(service)
    assert second is not None and second.id == task.id
    last = service.settle([service.timed_out(second, 30)], 0).finished[0]
    assert last is not None and (last.status, last.attempts) == ("failed", 2)


def test_a_cancel_that_comes_before_a_claimed_attempt_starts_reaches_it(
    service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claimed (running in the store) but not started yet: a later task of a worker's batch,
    # or one in its simulated work. Its cancel must reach the attempt once it starts, so
    # that a command is not run to its end after the user was told it is being stopped.
    first, second = service.submit("x"), service.submit("x")
    [claimed] = service.settle([], 1).claimed
    assert claimed.id == first.id
    assert service.cancel(first.id).cancel_requested
    assert service.start_attempt(claimed).cancelled.is_set()
    # Asked to stop after the claim committed, before settle() handed the task over.
    original = service.store.settle

    def cancelled_meanwhile(finishes: Any, claim: int, now: float) -> Any:
        settled = original(finishes, claim, now)
        for task in settled.claimed:
            service.cancel(task.id)
        return settled

    monkeypatch.setattr(service.store, "settle", cancelled_meanwhile)
    [late] = service.settle([], 1).claimed
    assert late.id == second.id
    ctx = service.start_attempt(late)
    assert ctx.cancelled.is_set() and not ctx.stopping
    stored = service.settle([service.run(late, ctx)], 0).finished[0]
    assert stored is not None and stored.status == TaskStatus.CANCELLED
