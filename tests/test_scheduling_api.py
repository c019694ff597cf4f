"""When and in what order tasks run, through the real HTTP API: delays and run_at, priority,
dependencies (after), Idempotency-Key, the scheduled filter and sorting, DELETE, pausing the
queue and the /schedules routes.

Times are an injected clock (the service's and the scheduler's); with workers, waits are on
conditions (qtbot.waitUntil), never sleeps.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pytestqt.qtbot import QtBot

from service.api import ApiConfig, create_app
from service.api_server import ApiServer
from service.schedules import Schedule, Scheduler
from service.scheduling import MAX_AHEAD_SECONDS
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import SORTS, TaskQuery
from storage.sqlite import SqliteTaskStore
from tests.action_helpers import python_action
from tests.conftest import Client, Response, claim_next, make_db, run_claimed, unchanged
from tests.test_schedules import Clock

NOW = 1_800_000_000.0
JSON = {"Content-Type": "application/json"}
WAIT_MS = 15_000

SORT_NAMES = ", ".join(SORTS)


@dataclass
class Env:
    store: SqliteTaskStore
    service: TaskService
    clock: Clock
    scheduler: Scheduler
    client: Client
    path: Path
    pools: list[WorkerPool]

    def workers(self, n: int = 1) -> WorkerPool:
        pool = WorkerPool(self.service, n, prefetch=1, work_delay=0)
        pool.start()
        self.pools.append(pool)
        return pool


@contextlib.contextmanager
def serving(folder: Path, clock: Clock, schedules: list[Schedule] | None = None,
            max_attempts: int = 3) -> Iterator[Env]:
    path = make_db(folder / "tasks.db")
    store = SqliteTaskStore(path)
    service = TaskService(store, max_attempts=max_attempts, backoff_base=0.01, clock=clock)
    scheduler = Scheduler(service, schedules or [], zone=ZoneInfo("Europe/Berlin"), clock=clock)
    server = ApiServer(create_app(service, ApiConfig(schedules=scheduler)), "127.0.0.1", 0)
    server.start()
    env = Env(store, service, clock, scheduler, Client(server.url), path, [])
    try:
        yield env
    finally:
        server.stop()
        for pool in env.pools:
            pool.stop()
        store.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    schedules = [Schedule("hourly", "uppercase", {"text": "tick"}, None, 3600.0),
                 Schedule("nightly", "sum", {"numbers": [1, 2]}, "30 2 * * *", None)]
    with serving(tmp_path, Clock(NOW), schedules) as e:
        yield e


def post(env: Env, body: Any, key: str | None = None) -> Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return env.client.post("/tasks", body, headers=headers)


def accepted(resp: Response, status: int = 202) -> str:
    assert resp.status == status, (resp.status, resp.body)
    task_id: str = resp.json()["id"]
    return task_id


def task(env: Env, task_id: str) -> dict[str, Any]:
    resp = env.client.get(f"/tasks/{task_id}")
    assert resp.status == 200, (resp.status, resp.body)
    body: dict[str, Any] = resp.json()
    return body


def refused(env: Env, resp: Response, status: int, contains: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert contains in resp.json()["error"], resp.json()


# -- delays -----------------------------------------------------------------------------------


def test_a_delayed_task_is_queued_with_run_after_and_not_run_before_then(env: Env) -> None:
    delayed = accepted(post(env, {"action": "uppercase", "data": {"text": "later"},
                                  "delay": 240}))
    at_time = accepted(post(env, {"action": "uppercase", "run_at": NOW + 600}))
    now_task = accepted(post(env, {"action": "uppercase"}))
    shown = task(env, delayed)
    assert (shown["status"], shown["run_after"], shown["priority"], shown["after"]) == (
        "queued", NOW + 240, 0, [])
    assert task(env, at_time)["run_after"] == NOW + 600
    assert task(env, now_task)["run_after"] == NOW
    claimed = claim_next(env.service)
    assert claimed is not None and claimed.id == now_task
    assert claim_next(env.service) is None  # neither is due
    env.clock.now = NOW + 240
    claimed = claim_next(env.service)
    assert claimed is not None and claimed.id == delayed
    assert claim_next(env.service) is None
    env.clock.now = NOW + 600
    claimed = claim_next(env.service)
    assert claimed is not None and claimed.id == at_time


@pytest.mark.parametrize(("body", "message"), [
    ({"delay": 10, "run_at": NOW + 10}, "give delay or run_at, not both"),
    ({"run_at": NOW - 61}, "run_at is in the past"),
    ({"run_at": (NOW + 10) * 1000}, "run_at is more than a year ahead"),
    ({"run_at": NOW + MAX_AHEAD_SECONDS + 1}, "run_at is more than a year ahead"),
    ({"delay": -1}, "delay must not be negative"),
    ({"delay": MAX_AHEAD_SECONDS + 1}, "delay must be at most a year"),
    ({"delay": "60"}, "delay must be a number of seconds"),
    ({"delay": True}, "delay must be a number of seconds"),
    ({"run_at": "tomorrow"}, "run_at must be a number of seconds"),
])
def test_bad_times_are_400_and_store_nothing(env: Env, body: dict[str, Any], message: str
                                             ) -> None:
    with unchanged(env.store):
        refused(env, post(env, {"action": "x", **body}), 400, message)


def test_a_run_at_within_the_last_minute_runs_at_once(env: Env) -> None:
    task_id = accepted(post(env, {"action": "x", "run_at": NOW - 59}))
    assert task(env, task_id)["run_after"] == NOW


# -- priority ---------------------------------------------------------------------------------


def test_higher_priority_runs_first_equal_priorities_oldest_first(
    env: Env, qtbot: QtBot
) -> None:
    order: list[str] = []

    def note(data: dict[str, Any]) -> dict[str, Any]:
        order.append(data["n"])
        return {}

    env.service.registry.register(python_action("note", note, lambda d: None, "notes the order"))
    assert env.client.post("/queue/pause", headers=JSON).status == 200
    for n, priority in [("low", -100), ("a", 0), ("top", 100), ("b", 0), ("mid", 50)]:
        accepted(post(env, {"action": "note", "data": {"n": n}, "priority": priority}))
    env.workers(1)
    assert env.client.post("/queue/resume", headers=JSON).json() == {"paused": False}
    qtbot.waitUntil(lambda: len(order) == 5, timeout=WAIT_MS)
    assert order == ["top", "mid", "a", "b", "low"]


@pytest.mark.parametrize(("priority", "message"), [
    (101, "priority must be from -100 to 100"),
    (-101, "priority must be from -100 to 100"),
    (1.5, "priority must be an integer"),
    ("5", "priority must be an integer"),
    (True, "priority must be an integer"),
    (10**30, "priority must be from -100 to 100"),
])
def test_bad_priorities_are_400(env: Env, priority: Any, message: str) -> None:
    with unchanged(env.store):
        refused(env, post(env, {"action": "x", "priority": priority}), 400, message)


def test_sorting_by_priority_and_the_scheduled_filter(env: Env) -> None:
    ids = {name: accepted(post(env, {"action": "x", "priority": p, **extra}))
           for name, p, extra in [("a", 0, {}), ("later", 5, {"delay": 60}),
                                  ("high", 9, {}), ("low", -9, {"delay": 30}), ("b", 0, {})]}
    listing = env.client.get("/tasks?sort=priority").json()
    assert [t["id"] for t in listing["tasks"]] == [
        ids["high"], ids["later"], ids["b"], ids["a"], ids["low"]]
    newest = env.client.get("/tasks?sort=newest").json()["tasks"]
    assert [t["id"] for t in newest] == [ids[n] for n in ("b", "low", "high", "later", "a")]
    scheduled = env.client.get("/tasks?scheduled=true&sort=priority").json()
    assert ([t["id"] for t in scheduled["tasks"]], scheduled["total"]) == (
        [ids["later"], ids["low"]], 2)
    assert env.client.get("/tasks?scheduled=false").json()["total"] == 5
    env.clock.now = NOW + 30  # "low" is due now: no longer scheduled
    assert [t["id"] for t in env.client.get("/tasks?scheduled=true").json()["tasks"]] == [
        ids["later"]]
    for query, message in [("sort=oldest", "unknown sort 'oldest'; valid: " + SORT_NAMES),
                           ("scheduled=yes", "scheduled must be true or false"),
                           ("scheduled=True", "scheduled must be true or false"),
                           ("sort=priority&sort=newest", "sort given more than once")]:
        refused(env, env.client.get(f"/tasks?{query}"), 400, message)


# -- dependencies -----------------------------------------------------------------------------


def test_a_task_runs_only_once_everything_it_waits_for_completed(
    env: Env, qtbot: QtBot
) -> None:
    gate = threading.Event()
    env.service.registry.register(python_action("gated", lambda d: gate.wait(30) and {},
                                         lambda d: None, "waits for the test"))
    first = accepted(post(env, {"action": "gated"}))
    second = accepted(post(env, {"action": "uppercase", "data": {"text": "b"}}))
    after = accepted(post(env, {"action": "uppercase", "data": {"text": "c"},
                                "after": [first, second, first]}))
    assert task(env, after)["after"] == [first, second]
    env.workers(2)
    qtbot.waitUntil(lambda: task(env, second)["status"] == "completed", timeout=WAIT_MS)
    assert task(env, after)["status"] == "queued"  # first is still running
    gate.set()
    qtbot.waitUntil(lambda: task(env, after)["status"] == "completed", timeout=WAIT_MS)
    shown = task(env, after)
    assert shown["started_at"] >= task(env, first)["processed_at"]


def test_a_failed_task_cancels_what_waits_for_it_down_the_chain(env: Env, qtbot: QtBot
                                                                 ) -> None:
    env.service.max_attempts = 1
    env.service.registry.register(python_action("fails", _raise, lambda d: None, "fails"))
    root = accepted(post(env, {"action": "fails"}))
    child = accepted(post(env, {"action": "x", "after": [root]}))
    grandchild = accepted(post(env, {"action": "x", "after": [child]}))
    env.workers(1)
    qtbot.waitUntil(lambda: task(env, grandchild)["status"] == "cancelled", timeout=WAIT_MS)
    assert task(env, root)["status"] == "failed"
    assert task(env, child)["error"] == f"cancelled: task {root}, which it waits for, failed"
    assert task(env, grandchild)["error"] == (
        f"cancelled: task {child}, which it waits for, was cancelled")
    # Waiting for a task that failed already: cancelled at once, naming it.
    late = accepted(post(env, {"action": "x", "after": [root]}))
    assert task(env, late)["status"] == "cancelled" and root in task(env, late)["error"]


def _raise(data: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


def test_cancelling_a_task_cancels_what_waits_for_it(env: Env) -> None:
    root = accepted(post(env, {"action": "x"}))
    child = accepted(post(env, {"action": "x", "after": [root]}))
    assert env.client.post(f"/tasks/{root}/cancel", headers=JSON).status == 200
    assert task(env, child)["status"] == "cancelled"
    assert task(env, child)["error"] == f"cancelled: task {root}, which it waits for, " \
                                        "was cancelled"


@pytest.mark.parametrize(("after", "message"), [
    (["no-such-task"], "unknown task id(s) in after: no-such-task"),
    ("not-a-list", "after must be a list of task ids"),
    ([1, 2], "after must be a list of task ids (strings)"),
    ([""], "after must be a list of task ids (strings)"),
    (["x" * 101], "after must be a list of task ids (strings)"),
    ([f"id-{i}" for i in range(101)], "after may name at most 100 tasks"),
])
def test_bad_dependencies_are_400_and_store_nothing(env: Env, after: Any, message: str
                                                    ) -> None:
    accepted(post(env, {"action": "x"}))
    with unchanged(env.store):
        refused(env, post(env, {"action": "x", "after": after}), 400, message)


def test_a_hundred_dependencies_are_accepted(env: Env) -> None:
    ids = env.service.submit_many("x", {}, 100)
    task_id = accepted(post(env, {"action": "x", "after": ids}))
    assert task(env, task_id)["after"] == ids


# -- idempotency keys -------------------------------------------------------------------------


def test_a_repeated_idempotency_key_answers_the_first_task_and_stores_nothing(
    env: Env,
) -> None:
    body = {"action": "uppercase", "data": {"text": "once", "n": 1}, "delay": 60}
    first = accepted(post(env, body, key="order-42"))
    env.clock.now += 5  # a retry a little later is the same request
    with unchanged(env.store):
        again = post(env, {"data": {"n": 1, "text": "once"}, "delay": 60.0,
                           "action": "uppercase"}, key="order-42")
        assert again.status == 200 and again.json() == {"id": first, "status": "queued"}
    env.service.cancel(first)
    assert post(env, body, key="order-42").json() == {"id": first, "status": "cancelled"}
    with unchanged(env.store):
        conflict = post(env, {**body, "delay": 61}, key="order-42")
        refused(env, conflict, 409, "'order-42' was used for a different request")
    # The key is kept as long as the task: deleted, it is free again.
    assert env.client.request("DELETE", f"/tasks/{first}").status == 200
    assert accepted(post(env, body, key="order-42")) != first


@pytest.mark.parametrize(("key", "message"), [
    ("k" * 256, "Idempotency-Key must be 1 to 255 characters"),
    ("tab\there", "Idempotency-Key must be printable ASCII characters"),
    ("é", "Idempotency-Key must be printable ASCII characters"),
])
def test_bad_idempotency_keys_are_400(env: Env, key: str, message: str) -> None:
    with unchanged(env.store):
        resp = env.client.request("POST", "/tasks", body=b'{"action": "x"}', headers={
            "Content-Type": "application/json", "Idempotency-Key": key})
        refused(env, resp, 400, message)
    assert accepted(post(env, {"action": "x"}, key="k" * 255))


def test_sixteen_concurrent_posts_with_one_key_create_one_task(env: Env) -> None:
    barrier = threading.Barrier(16)
    answers: list[Response] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        resp = post(env, {"action": "x", "data": {"same": True}}, key="race")
        with lock:
            answers.append(resp)

    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in answers) == [200] * 15 + [202]
    assert len({r.json()["id"] for r in answers}) == 1
    assert env.store.count(TaskQuery()) == 1


# -- DELETE /tasks/{id} -----------------------------------------------------------------------


def test_delete_removes_a_finished_task_only(env: Env) -> None:
    done = accepted(post(env, {"action": "uppercase", "data": {"text": "a"}}))
    claimed = claim_next(env.service)
    assert claimed is not None and claimed.id == done
    run_claimed(env.service, claimed)
    running = accepted(post(env, {"action": "x"}))
    claimed = claim_next(env.service)
    assert claimed is not None and claimed.id == running
    cancelled = accepted(post(env, {"action": "x"}))
    env.service.cancel(cancelled)
    answer = env.client.request("DELETE", f"/tasks/{done}")
    assert answer.status == 200 and answer.json()["id"] == done
    assert answer.json()["result"] == {"output": "A"}
    assert env.client.get(f"/tasks/{done}").status == 404
    with unchanged(env.store):
        refused(env, env.client.request("DELETE", f"/tasks/{running}"), 409,
                f"cannot delete task {running}: it is running")
        refused(env, env.client.request("DELETE", f"/tasks/{done}"), 404, "not found")
    assert env.client.request("DELETE", f"/tasks/{cancelled}").status == 200


def test_delete_of_a_queued_task_is_409(env: Env) -> None:
    queued = accepted(post(env, {"action": "x"}))
    with unchanged(env.store):
        refused(env, env.client.request("DELETE", f"/tasks/{queued}"), 409,
                f"cannot delete task {queued}: it is queued (only finished tasks can be)")


# -- pausing the queue ------------------------------------------------------------------------


def test_pause_lets_running_tasks_finish_starts_nothing_accepts_and_survives_a_restart(
    env: Env, qtbot: QtBot
) -> None:
    gate = threading.Event()
    env.service.registry.register(python_action("gated", lambda d: gate.wait(30) and {"ok": 1},
                                         lambda d: None, "waits for the test"))
    running = accepted(post(env, {"action": "gated"}))
    env.workers(1)
    qtbot.waitUntil(lambda: task(env, running)["status"] == "running", timeout=WAIT_MS)
    assert env.client.post("/queue/pause", headers=JSON).json() == {"paused": True}
    assert env.client.request("POST", "/queue/pause", body=b"{}", headers=JSON).status == 200
    assert env.client.get("/stats").json()["paused"] is True
    waiting = accepted(post(env, {"action": "uppercase", "data": {"text": "w"}}))
    gate.set()
    qtbot.waitUntil(lambda: task(env, running)["status"] == "completed", timeout=WAIT_MS)
    # The worker is free and the task due, but nothing starts while paused.
    qtbot.waitUntil(lambda: env.pools[0].busy == 0, timeout=WAIT_MS)
    assert claim_next(env.service) is None and task(env, waiting)["status"] == "queued"
    # A restart keeps the pause: the state is in the database.
    other = SqliteTaskStore(env.path)
    try:
        assert other.paused()
    finally:
        other.close()
    assert env.client.post("/queue/resume", headers=JSON).json() == {"paused": False}
    qtbot.waitUntil(lambda: task(env, waiting)["status"] == "completed", timeout=WAIT_MS)
    assert env.client.get("/stats").json()["paused"] is False


def test_pause_and_resume_take_no_body(env: Env) -> None:
    with unchanged(env.store):
        refused(env, env.client.post("/queue/pause", {"now": True}), 400, "takes no body")
        refused(env, env.client.request("POST", "/queue/resume", body=b"{}",
                                        headers={"Content-Type": "text/plain"}), 415,
                "Content-Type")
    assert env.client.get("/queue/pause").status == 405


# -- schedules --------------------------------------------------------------------------------


def test_get_schedules_lists_each_with_next_due_and_last_task(env: Env) -> None:
    listing = env.client.get("/schedules")
    assert listing.status == 200
    hourly, nightly = listing.json()["schedules"]
    assert hourly == {"name": "hourly", "action": "uppercase", "data": {"text": "tick"},
                      "cron": None, "every": 3600.0, "paused": False,
                      "next_due": (NOW // 3600 + 1) * 3600, "last_due": None,
                      "last_task": None}
    assert (nightly["cron"], nightly["every"]) == ("30 2 * * *", None)
    fired = env.client.post("/schedules/hourly/run", headers=JSON)
    assert fired.status == 202
    body = fired.json()
    assert body["status"] == "queued" and task(env, body["id"])["data"] == {"text": "tick"}
    hourly = env.client.get("/schedules").json()["schedules"][0]
    assert hourly["last_task"] == {"id": body["id"], "status": "queued"}
    assert hourly["last_due"] == NOW


def test_pause_and_resume_a_schedule(env: Env) -> None:
    paused = env.client.post("/schedules/nightly/pause", headers=JSON)
    assert paused.status == 200
    assert (paused.json()["name"], paused.json()["paused"], paused.json()["next_due"]) == (
        "nightly", True, None)
    assert env.store.schedule_states()["nightly"].paused
    env.clock.now += 2 * 86_400
    env.scheduler.tick()
    assert env.store.count(TaskQuery(action="sum")) == 0
    resumed = env.client.post("/schedules/nightly/resume", headers=JSON).json()
    assert resumed["paused"] is False and resumed["next_due"] > NOW
    # Run now works on a paused schedule too.
    env.client.post("/schedules/nightly/pause", headers=JSON)
    assert env.client.post("/schedules/nightly/run", headers=JSON).status == 202


@pytest.mark.parametrize("verb", ["run", "pause", "resume"])
def test_an_unknown_schedule_is_404(env: Env, verb: str) -> None:
    with unchanged(env.store):
        refused(env, env.client.post(f"/schedules/nope/{verb}", headers=JSON), 404,
                "schedule 'nope' not found")
        refused(env, env.client.post(f"/schedules/hourly/{verb}", {"x": 1}), 400,
                "takes no body")


def test_without_a_scheduler_there_are_no_schedules(
    api_factory: Callable[..., Client],
) -> None:
    client = api_factory()
    assert client.get("/schedules").json() == {"schedules": []}
    assert client.post("/schedules/x/run", headers=JSON).status == 404


def test_priority_and_delay_of_a_batch_from_the_service(env: Env) -> None:
    """submit_many (the window's × N) takes the same options, checked the same way."""
    ids = env.service.submit_many("x", {}, 3, priority=7, delay=30)
    shown = [task(env, i) for i in ids]
    assert {(t["priority"], t["run_after"]) for t in shown} == {(7, NOW + 30)}
    with pytest.raises(Exception, match="priority must be from -100 to 100"):
        env.service.submit_many("x", {}, 3, priority=500)
