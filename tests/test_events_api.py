"""GET /events over real HTTP (cheroot on port 0): Server-Sent Events for every task change, in
order, resumable by Last-Event-ID, filtered, bounded, and never in the way of other requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bottle
import pytest

from service.api import ApiConfig, create_app
from service.api.event_routes import StreamSlots, _format
from service.api_server import ApiServer
from service.event_log import EventLog, LoggedEvent
from service.events import EventKind
from service.openapi import openapi_document
from service.task_service import TaskService
from storage import TaskQuery
from tests.conftest import Client, claim_next, run_claimed
from tests.sse_client import Sse, SseStream
from tests.test_event_log import a_task
from tests.test_openapi import response_validator

WAIT = 10.0  # seconds, for anything that should happen at once


@dataclass
class Served:
    server: ApiServer
    app: bottle.Bottle
    client: Client

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def slots(self) -> StreamSlots:
        slots = self.app.config["taskdesk.event_streams"]
        assert isinstance(slots, StreamSlots)
        return slots

    def stream(self, path: str = "/events", **headers: str) -> SseStream:
        return SseStream(self.url, path, headers, timeout=WAIT)


@pytest.fixture
def serve(service: TaskService) -> Iterator[Callable[..., Served]]:
    servers: list[ApiServer] = []
    streams: list[SseStream] = []

    def start(config: ApiConfig | None = None, timeout: float | None = None) -> Served:
        app = create_app(service, config)
        server = ApiServer(app, "127.0.0.1", 0)
        if timeout is not None:
            server._server.timeout = timeout  # how long a write may make no progress
        server.start()
        servers.append(server)
        return Served(server, app, Client(server.url))

    yield start
    for stream in streams:
        stream.close()
    for server in servers:
        server.stop()


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve()


def post_task(client: Client, action: str = "uppercase", data: Any = None) -> str:
    resp = client.post("/tasks", {"action": action, "data": data or {"text": "x"}})
    assert resp.status == 202, resp.body
    task_id = resp.json()["id"]
    assert isinstance(task_id, str)
    return task_id


def ids_of(events: list[Sse]) -> list[int]:
    return [int(e.id or 0) for e in events]


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> float:
    """Poll *condition* until true; how long it took (fails after *timeout*)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - started


# -- what a stream says ---------------------------------------------------------------------


def test_every_change_arrives_in_order_as_the_task_json(served: Served,
                                                        service: TaskService) -> None:
    stream = served.stream()
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    first = stream.next(WAIT)
    assert first.event is None and first.comments  # the opening comment, before any event

    a = post_task(served.client, data={"text": "a"})
    b = post_task(served.client, data={"text": "b"})
    assert served.client.post(f"/tasks/{b}/cancel", {}).status == 200
    claimed = claim_next(service)  # a: b is cancelled
    assert claimed is not None and claimed.id == a
    run_claimed(service, claimed)
    service.delete(a)
    service.set_paused(True)

    events = stream.events(7)
    ids = ids_of(events)
    assert ids == list(range(ids[0], ids[0] + 7))  # consecutive: nothing skipped
    assert [(e.event, e.json().get("id"), e.json().get("status")) for e in events] == [
        ("task", a, "queued"), ("task", b, "queued"), ("task", b, "cancelled"),
        ("task", a, "running"), ("task", a, "completed"), ("deleted", a, "completed"),
        ("queue", None, None)]
    assert events[-1].json() == {"paused": True}
    # The data is exactly what GET /tasks/{id} answers for the task in that state.
    assert events[2].data == served.client.get(f"/tasks/{b}").body.decode()
    stream.close()


def test_a_submitted_batch_is_one_event_per_task(served: Served, service: TaskService) -> None:
    stream = served.stream()
    stream.next(WAIT)
    ids = service.submit_many("sum", {"numbers": [1, 2]}, 4)
    events = stream.events(4)
    assert [e.json()["id"] for e in events] == ids
    assert {e.json()["status"] for e in events} == {"queued"}
    stream.close()


def test_a_task_json_with_line_breaks_is_split_over_data_lines() -> None:
    event = LoggedEvent(7, EventKind.SUBMITTED, a_task(1, '{\n "text": "x"\n}'))
    text = _format(event)
    assert text.count("\ndata: ") == 3 and text.endswith("\n\n")
    data = "\n".join(line[6:] for line in text.splitlines() if line.startswith("data: "))
    assert json.loads(data)["data"] == {"text": "x"}


# -- resuming -------------------------------------------------------------------------------


def test_last_event_id_resumes_without_a_gap(served: Served) -> None:
    stream = served.stream()
    stream.next(WAIT)
    seen = [post_task(served.client) for _ in range(2)]
    events = stream.events(2)
    assert [e.json()["id"] for e in events] == seen
    last = events[-1].id
    stream.close()

    missed = [post_task(served.client) for _ in range(3)]  # while disconnected
    again = served.stream(**{"Last-Event-ID": str(last)})
    assert again.status == 200
    resumed = again.events(3)
    assert [e.json()["id"] for e in resumed] == missed
    assert ids_of(resumed) == [int(str(last)) + n for n in (1, 2, 3)]
    live = post_task(served.client)
    assert again.next_event(WAIT).json()["id"] == live
    again.close()


def test_too_far_behind_gets_a_resync_then_live_events(
    serve: Callable[..., Served], service: TaskService
) -> None:
    served = serve(ApiConfig(events=EventLog.attach(service, capacity=4)))
    stream = served.stream()
    stream.next(WAIT)
    post_task(served.client)
    last = stream.next_event(WAIT).id
    stream.close()
    for _ in range(6):  # more than the ring holds
        post_task(served.client)

    again = served.stream(**{"Last-Event-ID": str(last)})
    resync = again.next_event(WAIT)
    assert resync.event == "resync"
    newest = int(str(last)) + 6
    assert resync.id == str(newest) and resync.json() == {"last_id": newest}
    live = post_task(served.client)
    after = again.next_event(WAIT)
    assert (after.event, after.id, after.json()["id"]) == ("task", str(newest + 1), live)
    again.close()

    # An id this run never gave (a client of an earlier run, or another server's): resync.
    future = served.stream(**{"Last-Event-ID": str(newest + 1000)})
    assert future.next_event(WAIT).event == "resync"
    future.close()


def test_a_malformed_last_event_id_is_refused(served: Served) -> None:
    for bad in ("abc", "-1", "1.5", "1" * 20):
        stream = served.stream(**{"Last-Event-ID": bad})
        assert stream.status == 400, bad
        assert "Last-Event-ID" in json.loads(stream.body())["error"]
        stream.close()
    assert served.slots.open == 0


# -- filters and keep-alives ---------------------------------------------------------------


def test_status_and_action_filters(served: Served, service: TaskService) -> None:
    failed_sums = served.stream("/events?status=cancelled&action=sum")
    all_sums = served.stream("/events?action=sum")
    for stream in (failed_sums, all_sums):
        stream.next(WAIT)
    upper = post_task(served.client, "uppercase")
    total = post_task(served.client, "sum", {"numbers": [1]})
    for task_id in (upper, total):
        assert served.client.post(f"/tasks/{task_id}/cancel", {}).status == 200
    service.set_paused(True)

    got = failed_sums.events(2)
    assert [(e.event, e.json().get("id"), e.json().get("status")) for e in got] == [
        ("task", total, "cancelled"), ("queue", None, None)]  # queue events reach every stream
    got = all_sums.events(3)
    assert [(e.json().get("id"), e.json().get("status")) for e in got] == [
        (total, "queued"), (total, "cancelled"), (None, None)]
    for stream in (failed_sums, all_sums):
        stream.close()

    bad = served.stream("/events?status=pending")
    assert bad.status == 400 and "unknown status" in json.loads(bad.body())["error"]
    bad.close()


def test_a_quiet_stream_gets_keep_alives_carrying_the_id_it_has_reached(
    serve: Callable[..., Served]
) -> None:
    served = serve(ApiConfig(event_heartbeat_seconds=0.3))
    stream = served.stream("/events?action=sum")
    stream.next(WAIT)
    beat = stream.next(WAIT)  # nothing happens: a comment, no event
    assert beat.event is None and beat.comments == ("keep-alive",) and beat.id is None
    post_task(served.client, "uppercase")  # filtered out, but it moves the stream's id on
    moved = stream.next(WAIT)
    assert moved.event is None and moved.comments == ("keep-alive",)
    assert moved.id is not None
    total = post_task(served.client, "sum", {"numbers": [2]})
    event = stream.next_event(WAIT)
    assert event.json()["id"] == total and int(str(event.id)) == int(moved.id) + 1
    stream.close()


# -- bounded, and never in the way ----------------------------------------------------------


def test_streams_are_bounded_and_ordinary_requests_keep_being_answered(
    served: Served, service: TaskService
) -> None:
    """More streams than the bound (the rest get a 503 at once), then a flood of POSTs from
    16 threads: every POST is answered, and every open stream gets every task, in order."""
    limit = served.slots.limit
    assert limit == 8
    streams = [served.stream() for _ in range(limit + 4)]
    open_ = [s for s in streams if s.status == 200]
    refused = [s for s in streams if s.status != 200]
    assert len(open_) == limit
    documented = response_validator(openapi_document("x"), "/events", "get", 503)
    for stream in refused:
        assert stream.status == 503
        assert stream.headers["retry-after"] == "5"
        body = json.loads(stream.body())
        documented.validate(body)
        assert "at most 8" in body["error"]
        stream.close()
    for stream in open_:
        stream.next(WAIT)

    count = 400
    latencies: list[float] = []

    def submit(n: int) -> str:
        started = time.monotonic()
        task_id = post_task(served.client, "sum", {"numbers": [n]})
        latencies.append(time.monotonic() - started)
        return task_id

    with ThreadPoolExecutor(16) as pool:
        submitted = set(pool.map(submit, range(count)))
    assert len(submitted) == count
    assert max(latencies) < 5, max(latencies)  # answered throughout, not once streams end
    assert service.store.count(TaskQuery()) == count
    for stream in open_:
        events = stream.events(count, timeout=30)
        ids = ids_of(events)
        assert ids == sorted(ids) and len(set(ids)) == count
        assert {e.json()["id"] for e in events} == submitted
        stream.close()
    wait_until(lambda: served.slots.open == 0)


def test_a_client_that_hangs_up_frees_its_stream_at_once(served: Served) -> None:
    """With nothing to send (the keep-alive is 15 s away), the stream notices the closed
    socket itself, and another client can have the slot."""
    streams = [served.stream() for _ in range(served.slots.limit)]
    assert all(s.status == 200 for s in streams)
    extra = served.stream()
    assert extra.status == 503
    extra.close()
    streams[0].close()
    assert wait_until(lambda: served.slots.open == served.slots.limit - 1, timeout=3) < 3
    replacement = served.stream()
    assert replacement.status == 200
    for stream in [*streams[1:], replacement]:
        stream.close()
    wait_until(lambda: served.slots.open == 0, timeout=3)


def test_a_slow_reader_never_holds_up_the_changes_and_gets_a_resync(
    serve: Callable[..., Served], service: TaskService
) -> None:
    served = serve(ApiConfig(events=EventLog.attach(service, capacity=4)), timeout=30)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", served.server.port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    wait_until(lambda: served.slots.open == 1)

    # Tasks of 900 kB each: more than the socket buffers hold (up to 4 MiB on Linux), so the
    # stream's writes block while the client reads nothing. Every POST is answered all the
    # same (were producers to wait for streams, the first blocked write would hang them).
    big = {"text": "y" * 900_000}
    for _ in range(12):
        post_task(served.client, "uppercase", big)

    def read_until(marker: bytes, received: bytes = b"") -> bytes:
        while marker not in received:
            chunk = sock.recv(1 << 16)
            assert chunk, "the stream ended"
            received += chunk
        return received

    # Once it reads again (with a larger window, to read quickly): what the buffers held,
    # then the news that it fell behind the ring of 4 (with the newest id), then live events.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    received = read_until(b"event: resync")
    small = post_task(served.client, "sum", {"numbers": [1]})
    text = read_until(small.encode(), received).decode("latin-1")
    sock.close()
    assert text.count("event: task") < 12
    assert text.index("event: resync") < text.index(small)


def test_a_reader_that_stops_reading_is_dropped_after_the_server_timeout(
    serve: Callable[..., Served], service: TaskService
) -> None:
    served = serve(timeout=1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.server.port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    wait_until(lambda: served.slots.open == 1)
    big = {"text": "z" * 900_000}
    for _ in range(10):
        post_task(served.client, "uppercase", big)
    wait_until(lambda: served.slots.open == 0)  # a write blocked for 1 s ended the stream
    sock.close()


def test_stopping_the_server_ends_every_stream_cleanly(serve: Callable[..., Served]) -> None:
    served = serve()
    streams = [served.stream() for _ in range(3)]
    for stream in streams:
        stream.next(WAIT)
    started = time.monotonic()
    served.server.stop()
    assert time.monotonic() - started < 3
    for stream in streams:
        stream.body()  # to the end of the chunked body: no IncompleteRead
        with pytest.raises(EOFError):
            stream.next(WAIT)
        stream.close()


def test_ordinary_requests_are_answered_with_every_stream_and_thread_held(
    served: Served
) -> None:
    """Every stream open and the other threads held by clients that send nothing: the
    server's guard adds threads, so a request is still answered."""
    streams = [served.stream() for _ in range(served.slots.limit)]
    assert all(s.status == 200 for s in streams)
    stalled = []
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", served.server.port))
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # and never the rest
        stalled.append(sock)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(served.client.get("/health").status))
    thread.start()
    thread.join(WAIT)
    assert result == [200]
    for sock in stalled:
        sock.close()
    for stream in streams:
        stream.close()
