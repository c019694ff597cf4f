"""The HTTP API over a real cheroot server on port 0: every route, every status in the contract.

Most rejection checks share one module-wide server (stopping a cheroot server takes up to half
a second, so one per check would make the suite slow); each of them snapshots the database
before and after the request and asserts that nothing was written. Tests that need workers, a
token or other settings start their own server with ``api_factory``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.api import DEFAULT_LIMIT, MAX_BODY_BYTES, MAX_LIMIT, ApiConfig
from service.metrics import RateHistory
from service.task_service import TaskService
from storage import STATUSES, TaskQuery, TaskStore
from tests.action_helpers import python_action
from tests.conftest import ApiEnv as Env
from tests.conftest import Client, Response, claim_task, run_claimed, served, unchanged

# Nothing here depends on SQLite: every test runs on both backends.
pytestmark = pytest.mark.backends

JSON = {"Content-Type": "application/json"}
WAIT_MS = 15_000


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, backend: str,
           request: pytest.FixtureRequest) -> Iterator[Env]:
    """One server for the checks that only need a database and no workers."""
    with served(tmp_path_factory.mktemp("shared"), backend, request) as env:
        yield env




def expect_error(resp: Response, status: int, message: str | None = None) -> str:
    """Assert a JSON error response with *status* (and *message*); return the message."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and set(body) <= {"error", "detail"}, body
    error = body.get("error")
    assert isinstance(error, str) and error, body
    if message is not None:
        assert error == message, body
    return error


def submit(client: Client, action: str, data: Any = None) -> str:
    body: dict[str, Any] = {"action": action}
    if data is not None:
        body["data"] = data
    resp = client.post("/tasks", body)
    assert resp.status == 202, (resp.status, resp.body)
    task_id = resp.json()["id"]
    assert isinstance(task_id, str)
    return task_id


def post_raw(client: Client, path: str, body: bytes, content_type: str = "application/json"
             ) -> Response:
    return client.request("POST", path, body=body, headers={"Content-Type": content_type})


def get_task(client: Client, task_id: str) -> dict[str, Any]:
    resp = client.get(f"/tasks/{task_id}")
    assert resp.status == 200, (resp.status, resp.body)
    task: dict[str, Any] = resp.json()
    return task


def wait_status(qtbot: Any, client: Client, task_id: str, status: str) -> dict[str, Any]:
    qtbot.waitUntil(lambda: get_task(client, task_id)["status"] == status, timeout=WAIT_MS)
    return get_task(client, task_id)


def connect(client: Client) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(client.base_url)
    assert url.hostname is not None and url.port is not None
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def read_response(conn: http.client.HTTPConnection) -> Response:
    resp = conn.getresponse()
    return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())


def send(
    client: Client,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
    *,
    host: bool = True,
) -> Response:
    """One request with exactly the given headers (http.client adds Host unless host=False,
    and Content-Length only when *body* is given)."""
    conn = connect(client)
    try:
        conn.putrequest(method, path, skip_host=not host, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return read_response(conn)
    finally:
        conn.close()


# -- the tutorial's curl session ------------------------------------------------------------


def test_tutorial_session_uppercase_sum_and_status_filter(
    api_factory: Callable[..., Client], pool_factory: Callable[..., Any], qtbot: Any
) -> None:
    client = api_factory()

    # curl -X POST /tasks -H "Content-Type: application/json" -d '{"action": "uppercase", ...}'
    resp = client.post("/tasks", {"action": "uppercase", "data": {"text": "hello world"}})
    assert resp.status == 202
    accepted = resp.json()
    assert set(accepted) == {"id", "status"} and accepted["status"] == "queued"
    assert str(uuid.UUID(accepted["id"])) == accepted["id"]  # canonical text
    assert uuid.UUID(accepted["id"]).version == 4
    upper = accepted["id"]
    sum_ints = submit(client, "sum", {"numbers": [1, 2, 3]})
    sum_floats = submit(client, "sum", {"numbers": [1.5, 2.25]})
    sum_empty = submit(client, "sum")
    other = submit(client, "send_email", {"to": "a@example.com"})
    submitted = [upper, sum_ints, sum_floats, sum_empty, other]

    # Stored as queued before any worker exists.
    listing = client.get("/tasks").json()
    assert [t["id"] for t in listing["tasks"]] == submitted[::-1]  # newest first
    assert (listing["count"], listing["total"]) == (5, 5)
    assert {t["status"] for t in listing["tasks"]} == {"queued"}
    assert client.get("/tasks?status=completed").json() == {"tasks": [], "count": 0, "total": 0}

    pool_factory()
    qtbot.waitUntil(
        lambda: client.get("/tasks?status=completed").json()["total"] == 5, timeout=WAIT_MS
    )

    # curl http://localhost:8080/tasks
    listing = client.get("/tasks").json()
    assert (listing["count"], listing["total"]) == (5, 5)
    tasks = {t["id"]: t for t in listing["tasks"]}
    assert tasks[upper]["result"] == {"output": "HELLO WORLD"}
    assert tasks[upper]["data"] == {"text": "hello world"}
    assert tasks[upper]["action"] == "uppercase"
    assert tasks[sum_ints]["result"] == {"output": 6}
    assert type(tasks[sum_ints]["result"]["output"]) is int
    assert tasks[sum_floats]["result"] == {"output": 3.75}
    assert tasks[sum_empty]["result"] == {"output": 0}
    assert tasks[sum_empty]["data"] == {}
    assert tasks[other]["result"] == {"output": "processed"}
    for task in tasks.values():
        assert (task["status"], task["attempts"], task["error"]) == ("completed", 1, None)
        assert task["created_at"] <= task["started_at"] <= task["processed_at"]

    # curl "http://localhost:8080/tasks?status=completed"
    completed = client.get("/tasks?status=completed").json()
    assert sorted(t["id"] for t in completed["tasks"]) == sorted(submitted)
    assert client.get("/tasks?status=queued").json()["total"] == 0


def test_status_and_action_filters(
    api_factory: Callable[..., Client], pool_factory: Callable[..., Any], qtbot: Any
) -> None:
    client = api_factory()
    done_a = submit(client, "uppercase", {"text": "a"})
    done_b = submit(client, "sum", {"numbers": [1]})
    cancelled = submit(client, "uppercase", {"text": "c"})
    assert client.post(f"/tasks/{cancelled}/cancel", headers=JSON).status == 200
    pool = pool_factory()
    wait_status(qtbot, client, done_a, "completed")
    wait_status(qtbot, client, done_b, "completed")
    pool.stop()
    queued = submit(client, "uppercase", {"text": "q"})

    expected = {"completed": {done_a, done_b}, "cancelled": {cancelled}, "queued": {queued},
                "running": set(), "failed": set()}
    for status, ids in expected.items():
        page = client.get(f"/tasks?status={status}").json()
        assert {t["id"] for t in page["tasks"]} == ids, status
        assert page["total"] == page["count"] == len(ids), status
        assert {t["status"] for t in page["tasks"]} <= {status}
    assert client.get("/tasks?status=").json()["total"] == 4  # empty means no filter

    both = client.get("/tasks?status=completed&action=uppercase").json()
    assert [t["id"] for t in both["tasks"]] == [done_a] and both["total"] == 1
    by_action = client.get("/tasks?action=uppercase").json()
    assert [t["id"] for t in by_action["tasks"]] == [queued, cancelled, done_a]
    assert client.get("/tasks?action=nothing-like-this").json()["total"] == 0


# -- POST /tasks: rejected bodies ------------------------------------------------------------

MALFORMED = [
    b"{",
    b'{"action": "uppercase",}',
    b"{'action': 'uppercase'}",
    b'{"action": "uppercase"} trailing',
    b"",
    b"   \r\n",
    b'{"action": "\xff"}',  # not UTF-8
    b'{"action": "sum", "data": {"numbers": [NaN]}}',
    b'{"action": "sum", "data": {"numbers": [Infinity]}}',
    b'{"action": "x", "data": {"n": -Infinity}}',
    b"[" * 100_000 + b"]" * 100_000,  # nested too deeply for the parser
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_json_is_400_invalid_json(shared: Env, body: bytes) -> None:
    with unchanged(shared.store):
        expect_error(post_raw(shared.client, "/tasks", body), 400, "invalid JSON")


@pytest.mark.parametrize("body", [b"[]", b'[{"action": "x"}]', b'"uppercase"', b"42", b"null",
                                  b"true"])
def test_json_that_is_not_an_object_is_400(shared: Env, body: bytes) -> None:
    with unchanged(shared.store):
        expect_error(post_raw(shared.client, "/tasks", body), 400,
                     "request body must be a JSON object")


@pytest.mark.parametrize("body", [
    {},
    {"action": None},
    {"action": ""},
    {"action": "   "},
    {"data": {"text": "hello world"}},
    {"action": None, "data": {}},
])
def test_action_required(shared: Env, body: dict[str, Any]) -> None:
    with unchanged(shared.store):
        expect_error(shared.client.post("/tasks", body), 400, "action required")


BIG_INT = "9" * 400  # a valid JSON integer far beyond what a float can hold

WRONG_TYPES: list[tuple[str, str]] = [
    ('{"action": 1}', "action must be a string"),
    ('{"action": true}', "action must be a string"),
    ('{"action": ["uppercase"]}', "action must be a string"),
    ('{"action": {"name": "uppercase"}}', "action must be a string"),
    ('{"action": "' + "a" * 101 + '"}', "action must be at most 100 characters"),
    ('{"action": "upper\\ncase"}', "action must not contain control characters"),
    ('{"action": "uppercase", "data": []}', "data must be a JSON object"),
    ('{"action": "uppercase", "data": "hello world"}', "data must be a JSON object"),
    ('{"action": "uppercase", "data": 5}', "data must be a JSON object"),
    ('{"action": "uppercase", "data": true}', "data must be a JSON object"),
    ('{"action": "uppercase", "data": {"text": 5}}', "data.text: 5 is not of type 'string'"),
    ('{"action": "uppercase", "data": {"text": null}}',
     "data.text: None is not of type 'string'"),
    ('{"action": "uppercase", "data": {"text": ["a"]}}',
     "data.text: ['a'] is not of type 'string'"),
    ('{"action": "uppercase", "data": {"text": {"t": "a"}}}',
     "data.text: {'t': 'a'} is not of type 'string'"),
    ('{"action": "sum", "data": {"numbers": "1,2,3"}}',
     "data.numbers: '1,2,3' is not of type 'array'"),
    ('{"action": "sum", "data": {"numbers": {"a": 1}}}',
     "data.numbers: {'a': 1} is not of type 'array'"),
    ('{"action": "sum", "data": {"numbers": 6}}', "data.numbers: 6 is not of type 'array'"),
    ('{"action": "sum", "data": {"numbers": [1, "2"]}}',
     "data.numbers[1]: '2' is not of type 'number'"),
    ('{"action": "sum", "data": {"numbers": [true]}}',
     "data.numbers[0]: True is not of type 'number'"),
    ('{"action": "sum", "data": {"numbers": [1, 2, false]}}',
     "data.numbers[2]: False is not of type 'number'"),
    ('{"action": "sum", "data": {"numbers": [null]}}',
     "data.numbers[0]: None is not of type 'number'"),
    ('{"action": "sum", "data": {"numbers": [[1]]}}',
     "data.numbers[0]: [1] is not of type 'number'"),
    # NaN-like: numbers that are valid JSON but not finite doubles, or whose total is not.
    ('{"action": "sum", "data": {"numbers": [1e400]}}',
     "sum: the total is too large to represent"),
    ('{"action": "sum", "data": {"numbers": [-1e400, 1]}}',
     "sum: the total is too large to represent"),
    ('{"action": "sum", "data": {"numbers": [1e308, 1e308]}}',
     "sum: the total is too large to represent"),
    ('{"action": "sum", "data": {"numbers": [' + BIG_INT + ', 0.5]}}',
     "sum: the total is too large to represent"),
]


@pytest.mark.parametrize(("body", "message"), WRONG_TYPES, ids=range(len(WRONG_TYPES)))
def test_wrong_types_are_400_with_a_message(shared: Env, body: str, message: str) -> None:
    with unchanged(shared.store):
        expect_error(post_raw(shared.client, "/tasks", body.encode()), 400, message)


def test_data_that_is_not_representable_json_is_400(shared: Env) -> None:
    with unchanged(shared.store):
        error = expect_error(
            post_raw(shared.client, "/tasks", b'{"action": "x", "data": {"n": 1e400}}'), 400)
    assert error.startswith("data is not valid JSON")


@pytest.mark.parametrize(("body", "message"), [
    ({"action": "uppercase", "prio": 1}, "unknown field(s): prio"),
    ({"action": "x", "data": {}, "zeta": 1, "alpha": None}, "unknown field(s): alpha, zeta"),
    ({"Action": "uppercase"}, "unknown field(s): Action"),
    ({"action": "x", "id": str(uuid.uuid4()), "status": "completed"},
     "unknown field(s): id, status"),
])
def test_unknown_fields_are_400(shared: Env, body: dict[str, Any], message: str) -> None:
    with unchanged(shared.store):
        expect_error(shared.client.post("/tasks", body), 400, message)


def test_a_validator_crash_is_a_json_500_that_leaks_nothing(shared: Env) -> None:
    def explode(data: dict[str, Any]) -> None:
        raise RuntimeError("secret internal detail")

    shared.service.registry.register(python_action("crash-on-submit", lambda d: d, explode, "test"))
    with unchanged(shared.store):
        resp = shared.client.post("/tasks", {"action": "crash-on-submit"})
        expect_error(resp, 500, "internal server error")
    assert b"secret" not in resp.body


# -- POST /tasks: accepted bodies --------------------------------------------------------------


@pytest.mark.parametrize(("body", "action", "data"), [
    ({"action": "uppercase"}, "uppercase", {}),
    ({"action": "uppercase", "data": None}, "uppercase", {}),
    ({"action": "a" * 100, "data": {"k": [1, {"n": None}]}}, "a" * 100, {"k": [1, {"n": None}]}),
    ({"action": "대문자", "data": {"text": "안녕 세계"}}, "대문자", {"text": "안녕 세계"}),
    ({"action": "sum", "data": {"numbers": [1, -2.5, 10**30]}}, "sum",
     {"numbers": [1, -2.5, 10**30]}),
])
def test_accepted_submission_is_stored_queued_as_given(
    shared: Env, body: dict[str, Any], action: str, data: Any
) -> None:
    before = shared.store.count(TaskQuery())
    resp = shared.client.post("/tasks", body)
    assert resp.status == 202
    accepted = resp.json()
    assert accepted["status"] == "queued"
    task = get_task(shared.client, accepted["id"])
    assert (task["action"], task["data"], task["status"]) == (action, data, "queued")
    assert (task["result"], task["error"], task["attempts"]) == (None, None, 0)
    assert (task["started_at"], task["processed_at"]) == (None, None)
    assert shared.store.count(TaskQuery()) == before + 1


ABSENT_ID = str(uuid.uuid4())
BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"priority": 101}, "priority must be from -100 to 100"),
    ({"priority": -101}, "priority must be from -100 to 100"),
    ({"priority": True}, "priority must be an integer from -100 to 100"),
    ({"priority": 1.5}, "priority must be an integer from -100 to 100"),
    ({"delay": -1}, "delay must not be negative"),
    ({"delay": "60"}, "delay must be a number of seconds"),
    ({"delay": 366 * 24 * 3600 + 1}, "delay must be at most a year (31,622,400 seconds)"),
    ({"delay": 5, "run_at": 4_000_000_000}, "give delay or run_at, not both"),
    ({"run_at": 1_000_000_000}, "run_at is in the past (more than a minute ago); it is Unix "
                                "seconds, not milliseconds"),
    ({"run_at": 1_800_000_000_000}, "run_at is more than a year ahead; it is Unix seconds, not "
                                    "milliseconds"),
    ({"after": ABSENT_ID}, "after must be a list of task ids"),
    ({"after": [ABSENT_ID]}, f"unknown task id(s) in after: {ABSENT_ID}"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS, ids=range(len(BAD_OPTIONS)))
def test_scheduling_options_out_of_bounds_are_400(
    shared: Env, options: dict[str, Any], message: str
) -> None:
    with unchanged(shared.store):
        expect_error(shared.client.post("/tasks", {"action": "x", **options}), 400, message)


def test_scheduling_options_are_stored_with_the_task(shared: Env) -> None:
    before = time.time()
    delayed = get_task(shared.client, submit_with(shared.client, delay=60, priority=-3))
    after = time.time()
    assert before + 60 - 0.001 <= delayed["run_after"] <= after + 60 + 0.001
    assert (delayed["priority"], delayed["status"]) == (-3, "queued")
    at = round(after + 3600, 3)
    scheduled = get_task(shared.client, submit_with(shared.client, run_at=at, priority=100))
    assert (scheduled["run_after"], scheduled["priority"]) == (at, 100)
    waiting = get_task(shared.client, submit_with(shared.client, after=[delayed["id"]]))
    assert waiting["after"] == [delayed["id"]]


def submit_with(client: Client, **options: Any) -> str:
    resp = client.post("/tasks", {"action": "x", **options})
    assert resp.status == 202, (resp.status, resp.body)
    task_id: str = resp.json()["id"]
    return task_id


def test_an_idempotency_key_stores_one_task_per_request(shared: Env) -> None:
    # A client that lost the answer to its POST sends it again with the same key: it gets the
    # first task back, and nothing more is stored; the key on another request is a conflict.
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = {"action": "uppercase", "data": {"text": "once"}}
    first = shared.client.post("/tasks", body, headers=key)
    assert first.status == 202, first.body
    task_id = first.json()["id"]
    with unchanged(shared.store):
        again = shared.client.post("/tasks", body, headers=key)
        assert (again.status, again.json()) == (200, {"id": task_id, "status": "queued"})
        other = shared.client.post("/tasks", {"action": "uppercase", "data": {"text": "twice"}},
                                   headers=key)
        assert task_id in expect_error(other, 409)
        expect_error(shared.client.post("/tasks", body, headers={"Idempotency-Key": "k" * 256}),
                     400, "Idempotency-Key must be 1 to 255 characters")
    # Without the key the same body is another task.
    unkeyed = shared.client.post("/tasks", body)
    assert unkeyed.status == 202 and unkeyed.json()["id"] != task_id


# -- content type, body size, transfer encoding --------------------------------------------------


@pytest.mark.parametrize("content_type", [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/jsonx",
    "application/json-patch+json",
    "text/json",
])
def test_post_without_json_content_type_is_415(shared: Env, content_type: str | None) -> None:
    headers = [] if content_type is None else [("Content-Type", content_type)]
    with unchanged(shared.store):
        resp = send(shared.client, "POST", "/tasks", headers, b'{"action": "uppercase"}')
        expect_error(resp, 415)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "application/json;charset=UTF-8", "Application/JSON"])
def test_json_content_type_with_parameters_or_any_case_is_accepted(
    shared: Env, content_type: str
) -> None:
    body = json.dumps({"action": "uppercase", "data": {"text": "é"}}, ensure_ascii=False)
    resp = post_raw(shared.client, "/tasks", body.encode(), content_type)
    assert resp.status == 202
    assert get_task(shared.client, resp.json()["id"])["data"] == {"text": "é"}


def _body_of_size(size: int) -> bytes:
    head, tail = b'{"action": "x", "data": {"t": "', b'"}}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def test_body_of_exactly_1_mib_is_accepted(shared: Env) -> None:
    body = _body_of_size(MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    resp = post_raw(shared.client, "/tasks", body)
    assert resp.status == 202
    assert len(get_task(shared.client, resp.json()["id"])["data"]["t"]) > MAX_BODY_BYTES - 40


def post_while_reading(client: Client, path: str, body: bytes) -> Response:
    """POST *body* from another thread while reading the answer, as curl does: a server may
    answer (and close) before it has read a body it refuses."""
    conn = connect(client)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        sock = conn.sock
        assert sock is not None

        def send_body() -> None:
            with contextlib.suppress(OSError):  # the server may close before reading it all
                sock.sendall(body)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        resp = read_response(conn)
    finally:
        conn.close()
    sender.join(timeout=30)
    return resp


def test_body_over_1_mib_is_413(shared: Env) -> None:
    with unchanged(shared.store):
        resp = post_while_reading(shared.client, "/tasks", _body_of_size(MAX_BODY_BYTES + 1))
        expect_error(resp, 413)


@pytest.mark.parametrize("declared", [MAX_BODY_BYTES + 1, 5 * 1024 * 1024])
def test_declared_huge_body_is_a_json_413_before_it_is_sent(shared: Env, declared: int) -> None:
    # Only the headers are sent: the API must refuse on Content-Length alone, in JSON.
    with unchanged(shared.store):
        resp = send(shared.client, "POST", "/tasks",
                    [("Content-Type", "application/json"), ("Content-Length", str(declared))])
        expect_error(resp, 413)


def test_chunked_json_body_is_accepted(shared: Env) -> None:
    payload = b'{"action": "uppercase", "data": {"text": "chunked"}}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:10], payload[10:]))
    conn = connect(shared.client)
    try:
        conn.putrequest("POST", "/tasks", skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders(chunked + b"0\r\n\r\n")
        resp = read_response(conn)
    finally:
        conn.close()
    assert resp.status == 202, (resp.status, resp.body)
    assert get_task(shared.client, resp.json()["id"])["data"] == {"text": "chunked"}


def test_chunked_body_over_1_mib_is_a_json_413(shared: Env) -> None:
    # The body arrives in chunks with no Content-Length: the API stops reading after 1 MiB.
    body = _body_of_size(MAX_BODY_BYTES + 512 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                      for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    with unchanged(shared.store):
        conn = connect(shared.client)
        try:
            conn.putrequest("POST", "/tasks", skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            sock = conn.sock
            assert sock is not None
            sender = threading.Thread(target=_send_ignoring_reset, args=(sock, chunks),
                                      daemon=True)
            sender.start()
            resp = read_response(conn)
        finally:
            conn.close()
        sender.join(timeout=30)
        expect_error(resp, 413)


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    # The server may answer and close before reading everything, as it should.
    with contextlib.suppress(OSError):
        sock.sendall(data)


# -- GET /tasks: filters and paging -------------------------------------------------------------


@pytest.mark.parametrize("status", ["bogus", "pending", "COMPLETED", "done", " queued"])
def test_unknown_status_filter_is_400_listing_the_valid_ones(shared: Env, status: str) -> None:
    with unchanged(shared.store):
        error = expect_error(
            shared.client.get("/tasks?status=" + urllib.parse.quote(status)), 400)
    assert repr(status) in error
    for valid in STATUSES:
        assert valid in error


def test_unknown_non_ascii_status_is_named_as_sent(shared: Env) -> None:
    error = expect_error(shared.client.get("/tasks?status=" + urllib.parse.quote("완료")), 400)
    assert "완료" in error, error


def test_action_filter_that_is_not_utf8_does_not_list_every_task(shared: Env) -> None:
    submit(shared.client, "uppercase")
    resp = shared.client.get("/tasks?action=%ff")
    # Either refused, or a filter that matches nothing; never silently dropped.
    if resp.status == 200:
        assert resp.json()["total"] == 0, resp.json()["total"]
    else:
        expect_error(resp, 400)


@pytest.mark.parametrize("query", [
    "limit=abc", "limit=0", "limit=-1", f"limit={MAX_LIMIT + 1}", "limit=1.5", "limit=1e2",
    "limit=10abc", "limit=99999999999999999999999",
    "offset=-1", "offset=x", "offset=1.0",
    "offset=99999999999999999999",  # beyond SQLite's 64-bit integers
])
def test_bad_limit_or_offset_is_400(shared: Env, query: str) -> None:
    with unchanged(shared.store):
        error = expect_error(shared.client.get("/tasks?" + query), 400)
    assert error.startswith(query.split("=")[0]), error


@pytest.mark.parametrize("query", ["limit=1", f"limit={MAX_LIMIT}", "limit=", "offset=0",
                                   "offset=", "offset=1000000"])
def test_limit_and_offset_edges_are_accepted(shared: Env, query: str) -> None:
    resp = shared.client.get("/tasks?" + query)
    assert resp.status == 200
    page = resp.json()
    assert page["count"] == len(page["tasks"]) and page["total"] >= page["count"]


def test_limit_offset_paging_and_total(shared: Env) -> None:
    action = f"page-{uuid.uuid4()}"
    ids = [submit(shared.client, action, {"i": i}) for i in range(7)]
    newest_first = ids[::-1]
    seen: list[str] = []
    for offset, expected_count in [(0, 3), (3, 3), (6, 1), (7, 0), (50, 0)]:
        page = shared.client.get(f"/tasks?action={action}&limit=3&offset={offset}").json()
        assert (page["count"], page["total"]) == (expected_count, 7), offset
        assert len(page["tasks"]) == expected_count
        seen += [t["id"] for t in page["tasks"]]
    assert seen == newest_first
    page = shared.client.get(f"/tasks?action={action}&offset=5").json()
    assert [t["id"] for t in page["tasks"]] == newest_first[5:] and page["total"] == 7


def test_default_limit_is_100_and_total_counts_all_matches(shared: Env) -> None:
    action = f"many-{uuid.uuid4()}"
    shared.service.submit_many(action, None, DEFAULT_LIMIT + 1)
    page = shared.client.get(f"/tasks?action={action}").json()
    assert (page["count"], page["total"], len(page["tasks"])) == (
        DEFAULT_LIMIT, DEFAULT_LIMIT + 1, DEFAULT_LIMIT)


def test_non_ascii_action_filter(shared: Env) -> None:
    action = f"대문자-{uuid.uuid4()}"
    task_id = submit(shared.client, action, {"text": "x"})
    page = shared.client.get("/tasks?action=" + urllib.parse.quote(action)).json()
    assert [t["id"] for t in page["tasks"]] == [task_id] and page["total"] == 1


# -- GET /tasks/{id} ------------------------------------------------------------------------------


def test_get_task_200_is_the_full_task(shared: Env) -> None:
    task_id = submit(shared.client, "uppercase", {"text": "hello world"})
    task = get_task(shared.client, task_id)
    assert set(task) == {"id", "action", "data", "status", "result", "error", "attempts",
                         "max_attempts", "created_at", "started_at", "processed_at",
                         "run_after", "priority", "after", "progress", "progress_message",
                         "cancel_requested"}
    stored = shared.store.get(task_id)
    assert stored is not None and task == stored.to_dict()
    assert (task["max_attempts"], task["data"]) == (3, {"text": "hello world"})


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "%20", "%27%20OR%201=1--"])
def test_get_unknown_task_is_404(shared: Env, task_id: str) -> None:
    with unchanged(shared.store):
        error = expect_error(shared.client.get(f"/tasks/{task_id}"), 404)
    assert "not found" in error


# -- POST /tasks/{id}/cancel and /retry (no workers: tasks stay queued) --------------------------


def test_cancel_queued_then_retry_cancelled(shared: Env) -> None:
    task_id = submit(shared.client, "uppercase", {"text": "x"})

    resp = shared.client.post(f"/tasks/{task_id}/cancel", headers=JSON)
    assert resp.status == 200
    cancelled = resp.json()
    assert (cancelled["id"], cancelled["status"]) == (task_id, "cancelled")
    assert isinstance(cancelled["processed_at"], float)
    assert get_task(shared.client, task_id) == cancelled

    with unchanged(shared.store):
        error = expect_error(shared.client.post(f"/tasks/{task_id}/cancel", headers=JSON), 409)
    assert "cancelled" in error

    resp = shared.client.post(f"/tasks/{task_id}/retry", headers=JSON)
    assert resp.status == 202
    retried = resp.json()
    assert (retried["id"], retried["status"], retried["attempts"]) == (task_id, "queued", 0)
    assert (retried["error"], retried["result"], retried["processed_at"]) == (None, None, None)
    assert get_task(shared.client, task_id) == retried

    with unchanged(shared.store):
        error = expect_error(shared.client.post(f"/tasks/{task_id}/retry", headers=JSON), 409)
    assert "queued" in error


@pytest.mark.parametrize("verb", ["cancel", "retry"])
def test_cancel_or_retry_unknown_task_is_404(shared: Env, verb: str) -> None:
    with unchanged(shared.store):
        expect_error(shared.client.post(f"/tasks/{uuid.uuid4()}/{verb}", headers=JSON), 404)


def test_retry_a_running_task_is_409(shared: Env) -> None:
    task_id = submit(shared.client, "uppercase")
    assert claim_task(shared.service, task_id) is not None  # claimed, as a worker would
    with unchanged(shared.store):
        error = expect_error(shared.client.post(f"/tasks/{task_id}/retry", headers=JSON), 409)
    assert "running" in error


def test_cancel_a_running_task_is_202_and_asks_it_to_stop(shared: Env) -> None:
    task_id = submit(shared.client, "uppercase")
    running = claim_task(shared.service, task_id)
    assert running is not None
    for _ in range(2):  # asking twice is the same answer
        resp = shared.client.post(f"/tasks/{task_id}/cancel", headers=JSON)
        assert resp.status == 202
        assert (resp.json()["status"], resp.json()["cancel_requested"]) == ("running", True)
    done = run_claimed(shared.service, running)  # its attempt ends: cancelled, not completed
    assert done is not None and (done.status, done.result) == ("cancelled", None)
    error = expect_error(shared.client.post(f"/tasks/{task_id}/cancel", headers=JSON), 409)
    assert "cancelled" in error


def test_cancel_takes_an_empty_object_body(shared: Env) -> None:
    task_id = submit(shared.client, "uppercase")
    resp = post_raw(shared.client, f"/tasks/{task_id}/cancel", b"{}")
    assert resp.status == 200 and resp.json()["status"] == "cancelled"


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"reason": "x"}', "application/json", 400),
    (b"[]", "application/json", 400),
    (b"null", "application/json", 400),
    (b"{", "application/json", 400),
    (b"{}", "text/plain", 415),
    (b"", "application/x-www-form-urlencoded", 415),
])
@pytest.mark.parametrize("verb", ["cancel", "retry"])
def test_cancel_or_retry_with_a_bad_body_changes_nothing(
    shared: Env, verb: str, body: bytes, content_type: str, status: int
) -> None:
    task_id = submit(shared.client, "uppercase")
    if verb == "retry":
        shared.service.cancel(task_id)
    with unchanged(shared.store):
        expect_error(post_raw(shared.client, f"/tasks/{task_id}/{verb}", body, content_type),
                     status)


@pytest.mark.parametrize("verb", ["cancel", "retry"])
def test_cancel_or_retry_with_a_body_over_1_mib_is_413(shared: Env, verb: str) -> None:
    task_id = submit(shared.client, "uppercase")
    if verb == "retry":
        shared.service.cancel(task_id)
    with unchanged(shared.store):
        resp = post_while_reading(shared.client, f"/tasks/{task_id}/{verb}",
                                  b"{}" + b" " * MAX_BODY_BYTES)
        expect_error(resp, 413)


@pytest.mark.parametrize("verb", ["cancel", "retry"])
def test_cancel_or_retry_without_content_type_is_415(shared: Env, verb: str) -> None:
    task_id = submit(shared.client, "uppercase")
    if verb == "retry":
        shared.service.cancel(task_id)
    with unchanged(shared.store):
        expect_error(send(shared.client, "POST", f"/tasks/{task_id}/{verb}", [], b""), 415)


def test_retry_failed_and_409_for_completed(
    api_factory: Callable[..., Client], service: TaskService, pool_factory: Callable[..., Any],
    qtbot: Any,
) -> None:
    def boom(data: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    service.registry.register(python_action("explode", boom, lambda d: None, "always fails"))
    client = api_factory()
    failing = submit(client, "explode")
    ok = submit(client, "uppercase", {"text": "ok"})
    pool_factory()
    failed = wait_status(qtbot, client, failing, "failed")
    assert (failed["attempts"], failed["error"]) == (3, "RuntimeError: boom")
    wait_status(qtbot, client, ok, "completed")

    for task_id, verb, status in [(failing, "cancel", "failed"), (ok, "cancel", "completed"),
                                  (ok, "retry", "completed")]:
        before = get_task(client, task_id)
        error = expect_error(client.post(f"/tasks/{task_id}/{verb}", headers=JSON), 409)
        assert status in error
        assert get_task(client, task_id) == before

    resp = client.post(f"/tasks/{failing}/retry", headers=JSON)
    assert resp.status == 202
    retried = resp.json()
    assert (retried["status"], retried["attempts"], retried["error"]) == ("queued", 0, None)
    # Fresh attempts: it runs max_attempts times again before failing for good.
    qtbot.waitUntil(lambda: get_task(client, failing)["status"] == "failed"
                    and get_task(client, failing)["attempts"] == 3, timeout=WAIT_MS)


# -- Host header, token -------------------------------------------------------------------------

FORBIDDEN_HOSTS = ["evil.example", "evil.example:8080", "localhost.evil.example",
                   "127.0.0.1.evil.example", "[::2]:8080", "0.0.0.0:8080",
                   "localhost:80@evil.example", "localhost:8080:80", "localhost evil.example"]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_foreign_host_header_is_403(shared: Env, host: str) -> None:
    task_id = submit(shared.client, "uppercase")
    with unchanged(shared.store):
        for method, path, body in [("GET", "/tasks", None), ("GET", "/health", None),
                                   ("POST", "/tasks", b'{"action": "x"}'),
                                   ("POST", f"/tasks/{task_id}/cancel", b"{}")]:
            headers = [("Host", host), ("Content-Type", "application/json")]
            resp = send(shared.client, method, path, headers, body, host=False)
            expect_error(resp, 403)


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:1",
                                  "[::1]", "[::1]:8080", "LocalHost:8080"])
def test_loopback_host_headers_are_accepted(shared: Env, host: str) -> None:
    resp = send(shared.client, "GET", "/health", [("Host", host)], host=False)
    assert resp.status == 200 and resp.json()["status"] == "ok"


def test_any_host_is_accepted_when_hosts_are_not_restricted(
    api_factory: Callable[..., Client]
) -> None:
    client = api_factory(ApiConfig(allowed_hosts=None))
    resp = send(client, "GET", "/health", [("Host", "evil.example")], host=False)
    assert resp.status == 200


def test_token_is_required_on_every_route_when_set(
    api_factory: Callable[..., Client], store: TaskStore
) -> None:
    client = api_factory(ApiConfig(token="s3cret"))
    good = {"Authorization": "Bearer s3cret", **JSON}
    task_id = client.post("/tasks", {"action": "uppercase"}, headers=good).json()["id"]
    routes: list[tuple[str, str, bytes | None]] = [
        ("GET", "/tasks", None), ("GET", f"/tasks/{task_id}", None), ("GET", "/stats", None),
        ("GET", "/health", None), ("GET", "/openapi.json", None),
        ("POST", "/tasks", b'{"action": "x"}'), ("POST", f"/tasks/{task_id}/cancel", b"{}"),
        ("POST", f"/tasks/{task_id}/retry", b"{}"),
    ]
    for auth in [None, "Bearer wrong", "Bearer s3cret2", "Bearer ", "Basic czNjcmV0",
                 "s3cret", "Token s3cret"]:
        headers = dict(JSON) if auth is None else {**JSON, "Authorization": auth}
        for method, path, body in routes:
            with unchanged(store):
                resp = client.request(method, path, body=body, headers=headers)
                expect_error(resp, 401)
            assert resp.headers.get("www-authenticate", "").startswith("Bearer"), (auth, path)

    for auth in ["Bearer s3cret", "bearer s3cret"]:
        resp = client.get("/tasks", headers={"Authorization": auth})
        assert resp.status == 200 and resp.json()["total"] == 1, auth
    assert client.post("/tasks", {"action": "x"}, headers=good).status == 202
    assert client.post(f"/tasks/{task_id}/cancel", headers=good).status == 200
    assert client.post(f"/tasks/{task_id}/retry", headers=good).status == 202
    assert store.count(TaskQuery()) == 2


# -- 404 and 405 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("GET", "/tasks/a/b"), ("GET", "/tasks/"), ("GET", "/"),
    ("POST", "/nope"), ("POST", "/tasks/x/delete"),
])
def test_unknown_path_is_json_404(shared: Env, method: str, path: str) -> None:
    body = b"{}" if method == "POST" else None
    with unchanged(shared.store):
        resp = shared.client.request(method, path, body=body, headers=JSON)
        expect_error(resp, 404, "not found")
    assert resp.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/tasks", {"GET", "POST"}),
    ("PUT", "/tasks", {"GET", "POST"}),
    ("PATCH", "/tasks/{id}", {"GET", "DELETE"}),
    ("POST", "/tasks/{id}", {"GET", "DELETE"}),
    ("GET", "/tasks/{id}/cancel", {"POST"}),
    ("GET", "/tasks/{id}/retry", {"POST"}),
    ("GET", "/queue/pause", {"POST"}),
    ("DELETE", "/schedules", {"GET"}),
    ("GET", "/schedules/x/run", {"POST"}),
    ("POST", "/stats", {"GET"}),
    ("POST", "/health", {"GET"}),
    ("POST", "/openapi.json", {"GET"}),
])
def test_wrong_method_is_json_405(shared: Env, method: str, path: str, allowed: set[str]) -> None:
    path = path.replace("{id}", submit(shared.client, "uppercase"))
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    with unchanged(shared.store):
        resp = shared.client.request(method, path, body=body, headers=JSON)
        expect_error(resp, 405, "method not allowed")
    assert resp.headers["content-type"] == "application/json"
    assert set(resp.headers["allow"].split(",")) == allowed


# -- /stats and /health -----------------------------------------------------------------------


def test_stats_and_health(
    api_factory: Callable[..., Client], service: TaskService, pool_factory: Callable[..., Any],
    qtbot: Any,
) -> None:
    now = [1_000.5]
    service.rates = RateHistory(clock=lambda: now[0])
    client = api_factory(ApiConfig(worker_stats=lambda: {"busy": 1, "total": 4}, version="9.8.7"))

    health = client.get("/health")
    assert health.status == 200
    assert health.json() == {"status": "ok", "problems": [], "version": "9.8.7",
                             "workers": {"busy": 1, "total": 4},
                             "node": service.store.identity,
                             "database": service.store.location}

    empty = client.get("/stats").json()
    assert empty == {
        "counts": dict.fromkeys(STATUSES, 0),
        "queue_depth": 0,
        "workers": {"busy": 1, "total": 4},
        "throughput": {"completed_per_second": 0, "failed_per_second": 0, "window_seconds": 10},
        "paused": False,
    }

    done = [submit(client, "uppercase", {"text": str(i)}) for i in range(2)]
    cancelled = submit(client, "uppercase")
    assert client.post(f"/tasks/{cancelled}/cancel", headers=JSON).status == 200
    pool = pool_factory()
    for task_id in done:
        wait_status(qtbot, client, task_id, "completed")
    pool.stop()
    submit(client, "uppercase")  # stays queued

    now[0] += 1  # the rate window covers whole seconds already past
    stats = client.get("/stats")
    assert stats.status == 200
    body = stats.json()
    assert body["counts"] == {"queued": 1, "running": 0, "completed": 2, "failed": 0,
                              "cancelled": 1}
    assert body["queue_depth"] == 1
    assert body["workers"] == {"busy": 1, "total": 4}
    throughput = body["throughput"]
    assert throughput["window_seconds"] == 10
    assert math.isclose(throughput["completed_per_second"], 0.2)
    assert throughput["failed_per_second"] == 0



# -- sorting and export ---------------------------------------------------------------------


def test_sort_and_order_list_in_that_order(shared: Env) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"{tag}-b", f"{tag}-a", f"{tag}-c", f"{tag}-a"]
    ids = [submit(shared.client, name) for name in names]

    def listed(query: str) -> list[str]:
        resp = shared.client.get(f"/tasks?limit=1000&{query}")
        assert resp.status == 200, resp.body
        return [t["id"] for t in resp.json()["tasks"] if t["id"] in ids]

    # Ties (the two "-a") by creation, in the same direction as the order.
    by_name = [ids[1], ids[3], ids[0], ids[2]]
    assert listed("sort=action&order=asc") == by_name
    assert listed("sort=action&order=desc") == by_name[::-1]
    assert listed("sort=action") == by_name[::-1]  # desc by default
    assert listed("sort=created&order=asc") == ids
    assert listed("sort=newest") == listed("") == ids[::-1]
    page = shared.client.get(f"/tasks?action={names[1]}&sort=created&order=asc&limit=1").json()
    assert [t["id"] for t in page["tasks"]] == [ids[1]] and page["total"] == 2


@pytest.mark.parametrize(("query", "valid"), [
    ("sort=size", "created, started, finished, duration, attempts, action, status, priority"),
    ("order=up", "asc, desc"),
    ("format=xml", "csv, json"),
    ("format=csv&sort=size", "created, started"),
    # An export ignores limit and offset, but a value that is not one is still refused.
    ("format=csv&limit=null", "limit"),
    ("format=json&offset=-1", "offset"),
])
def test_a_bad_sort_order_or_format_is_a_400_naming_the_valid_ones(
    shared: Env, query: str, valid: str
) -> None:
    error = expect_error(shared.client.get("/tasks?" + query), 400)
    assert valid in error, error


def test_limit_and_offset_do_not_apply_to_an_export(shared: Env) -> None:
    action = f"export-all-{uuid.uuid4()}"
    ids = shared.service.submit_many(action, {}, 5)
    resp = shared.client.get(f"/tasks?format=json&action={action}&limit=2&offset=1")
    assert [t["id"] for t in resp.json()["tasks"]] == ids[::-1]


def test_a_csv_export_of_many_tasks_is_streamed_in_pages_and_parses_back_whole(
    shared: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import io

    from service.api import export_routes
    from service.export import CSV_COLUMNS

    action = f"export-{uuid.uuid4()}"
    ids = shared.service.submit_many(action, {"text": 'a "quoted", multi\nline text'}, 2500)
    pages: list[int] = []
    page = shared.store.page

    def counted(query: TaskQuery, limit: int, after: Any = None) -> Any:
        found = page(query, limit, after)
        pages.append(len(found))
        return found

    monkeypatch.setattr(shared.store, "page", counted)
    monkeypatch.setattr(export_routes, "EXPORT_PAGE", 1000)
    resp = shared.client.get(f"/tasks?format=csv&action={action}&sort=created&order=asc")
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert "content-length" not in resp.headers  # streamed: its length is not known before
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="tasks-') and disposition.endswith(
        '.csv"'), disposition
    # Read in pages of 1000 by cursor, never all at once.
    assert pages == [1000, 1000, 500]
    rows = list(csv.reader(io.StringIO(resp.body.decode("utf-8"), newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert [r[0] for r in rows[1:]] == ids  # every task, oldest first as asked
    first = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    stored = shared.service.get(ids[0])
    assert json.loads(first["data"]) == {"text": 'a "quoted", multi\nline text'}
    assert (first["action"], first["status"], first["attempts"]) == (action, "queued", "0")
    assert first["started_at"] == first["processed_at"] == first["duration"] == ""
    created = first["created_at"]
    assert created.endswith("+00:00") and abs(
        datetime_of(created) - stored.created_at) < 1e-5, created


def datetime_of(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def test_a_json_export_is_one_document_with_the_filters_and_order(shared: Env) -> None:
    action = f"export-json-{uuid.uuid4()}"
    ids = shared.service.submit_many(action, {"i": 1}, 1203)
    shared.service.cancel(ids[5])
    resp = shared.client.get(f"/tasks?format=json&action={action}&status=queued")
    assert resp.status == 200 and resp.headers["content-type"] == "application/json"
    assert resp.headers["content-disposition"].endswith('.json"')
    document = resp.json()
    expected = [i for i in ids[::-1] if i != ids[5]]  # newest first by default
    assert [t["id"] for t in document["tasks"]] == expected
    assert document["count"] == len(expected) == 1202
    assert document["tasks"][0] == shared.client.get(f"/tasks/{expected[0]}").json()


def test_a_csv_export_keeps_spreadsheets_from_running_texts_as_formulas(shared: Env) -> None:
    import csv
    import io

    action = f"=HYPERLINK(\"http://evil.example\")-{uuid.uuid4()}"
    task_id = submit(shared.client, action)
    resp = shared.client.get(f"/tasks?format=csv&action={urllib.parse.quote(action)}")
    [header, row] = list(csv.reader(io.StringIO(resp.body.decode("utf-8"), newline="")))
    values = dict(zip(header, row, strict=True))
    assert values["id"] == task_id and values["action"] == "'" + action
