"""GET /events: every change of a task as Server-Sent Events, for scripts and other programs.

Each change is one event, in the order the service reported them::

    id: 1718000000123457        a sequence that only grows (see service/event_log.py)
    event: task                 `deleted` for a deleted task, `queue` for pause/resume
    data: {"id": "…", …}        the task as GET /tasks/{id} gives it

``?status=`` and ``?action=`` keep only the tasks with that status (after the change) or that
action; queue events go to every stream. A client that reconnects with ``Last-Event-ID`` gets
every event after that id, none missed, if the server still holds them (the last 4,096
changes, fewer for large tasks); otherwise one ``event: resync`` whose id is the newest, after
which the stream goes on live: the client re-reads what it shows (GET /tasks), then carries
on. A comment line every 15 s of silence keeps proxies from closing an idle stream; on a
filtered stream it also carries the id the stream has got to, so a resume does not have to go
back over the events the filter skipped.

A stream holds one of the server's 16 threads for as long as it is open, so at most
``max_event_streams`` (8) are served at once and the next is refused with a 503: the other
threads are always left to ordinary requests. A stream ends when Taskdesk stops, and its
thread is freed within a quarter of a second of the client hanging up (the stream looks at
its socket between events, see api_server.py), or once a write has made no progress for the
server's 10 s timeout (a client that stopped reading). Producers never wait for streams: a
stream that falls behind the ring gets a resync.

Events are taken from the service on the threads that made the changes; two changes of one
task made by different threads at the same moment (a worker starting it while the API cancels
it) reach the log in the order those threads reported them, which can differ from the order
they were stored in. A client that must be sure of a task's final state reads it (GET
/tasks/{id}) once the events say it finished.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bottle

from service.api.http_io import json_error, query_text
from service.api_server import ENVIRON_SOCKET, ENVIRON_STOPPING
from service.event_log import EventLog, LoggedEvent
from service.events import EventKind
from service.task_service import TaskService
from storage import TaskStatus, parse_status

if TYPE_CHECKING:
    from service.api.app import ApiConfig

MAX_STREAMS = 8
HEARTBEAT_SECONDS = 15.0
# How often a stream with nothing to send looks whether Taskdesk is stopping or its client has
# hung up: what "promptly" costs, a few cheap wake-ups a second per open stream.
POLL_SECONDS = 0.25
RETRY_MS = 2000  # the reconnection delay a browser's EventSource is told to use
BATCH = 500  # events written at once, at most, when a stream has fallen behind

_QUEUE_KINDS = {EventKind.PAUSED: "true", EventKind.RESUMED: "false"}
_EVENT_ID = re.compile(r"[0-9]{1,19}")


class StreamSlots:
    """How many event streams are open, and the bound: taking a slot never waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    def take(self) -> bool:
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._open -= 1


def add_routes(app: bottle.Bottle, service: TaskService, cfg: ApiConfig) -> None:
    log = cfg.events if cfg.events is not None else EventLog.attach(service)
    slots = StreamSlots(cfg.max_event_streams)
    app.config["taskdesk.event_streams"] = slots  # how many are open: for tests

    @app.get("/events")
    def events() -> Iterator[bytes]:
        try:
            status = parse_status(query_text("status"))
        except ValueError as exc:
            json_error(400, str(exc))
        action = query_text("action")
        resume = _last_event_id(bottle.request.environ.get("HTTP_LAST_EVENT_ID"))
        environ = bottle.request.environ
        response = bottle.response
        response.content_type = "text/event-stream; charset=utf-8"
        response.set_header("Cache-Control", "no-cache")
        response.set_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
        stream = Stream(log, slots, status, action, resume, cfg.event_heartbeat_seconds,
                        environ.get(ENVIRON_STOPPING), environ.get(ENVIRON_SOCKET))
        return stream.run()


def _last_event_id(header: str | None) -> int | None:
    if header is None or header.strip() == "":
        return None
    if _EVENT_ID.fullmatch(header.strip()) is None:
        json_error(400, "Last-Event-ID must be the id of an event this server sent")
    return int(header)


class Stream:
    """One client's stream; ``run()`` is the WSGI body, started by bottle at once."""

    def __init__(
        self, log: EventLog, slots: StreamSlots, status: TaskStatus | None, action: str | None,
        resume: int | None, heartbeat: float, stopping: threading.Event | None,
        sock: socket.socket | None,
    ) -> None:
        self.log = log
        self.slots = slots
        self.status = status
        self.action = action
        self.resume = resume
        self.heartbeat = heartbeat
        self.stopping = stopping
        self.sock = sock

    def run(self) -> Iterator[bytes]:
        # The bound is checked here, in the body, so that the slot is given back by the
        # `finally` below however the stream ends (bottle runs a body up to its first chunk
        # before answering, and turns an error raised by then into the 503).
        if not self.slots.take():
            json_error(503, f"too many event streams: at most {self.slots.limit} at once; "
                       "close one, or try again later", {"Retry-After": "5"})
        try:
            yield from self._events()
        finally:
            self.slots.give_back()

    def _events(self) -> Iterator[bytes]:
        log = self.log
        after = log.last_id if self.resume is None else self.resume
        told = after  # the newest id the client has been given
        yield f"retry: {RETRY_MS}\n: events after {after}\n\n".encode()
        quiet_since = time.monotonic()
        while not self._should_end():
            wait = min(POLL_SECONDS, max(0.0, quiet_since + self.heartbeat - time.monotonic()))
            read = log.read(after, BATCH, wait)
            if read.gap:
                after = told = read.last_id
                yield (f"id: {after}\nevent: resync\n"
                       f'data: {{"last_id":{after}}}\n\n').encode()
                quiet_since = time.monotonic()
                continue
            if read.events:
                after = read.events[-1].id
                wanted = [e for e in read.events if self._wanted(e)]
                if wanted:
                    told = wanted[-1].id
                    yield "".join(_format(e) for e in wanted).encode()
                    quiet_since = time.monotonic()
                    continue
            if time.monotonic() - quiet_since >= self.heartbeat:
                # A filtered stream may have skipped events: its id moves on all the same.
                moved = f"id: {after}\n" if after != told else ""
                told = after
                yield f": keep-alive\n{moved}\n".encode()
                quiet_since = time.monotonic()

    def _should_end(self) -> bool:
        if self.stopping is not None and self.stopping.is_set():
            return True
        return self.sock is not None and peer_closed(self.sock)

    def _wanted(self, event: LoggedEvent) -> bool:
        task = event.task
        if task is None:
            return True
        if self.status is not None and task.status != self.status:
            return False
        return self.action is None or task.action == self.action


def _format(event: LoggedEvent) -> str:
    queue = _QUEUE_KINDS.get(event.kind)
    if queue is not None:
        return f'id: {event.id}\nevent: queue\ndata: {{"paused":{queue}}}\n\n'
    name = "deleted" if event.kind is EventKind.DELETED else "task"
    data = event.task_json()
    if "\n" in data or "\r" in data:  # JSON text stored by another program may hold line breaks
        data = "\ndata: ".join(data.splitlines())
    return f"id: {event.id}\nevent: {name}\ndata: {data}\n\n"


def peer_closed(sock: Any) -> bool:
    """Whether the client at the other end of *sock* has hung up, without waiting or reading
    anything it sent. A client of an event stream sends nothing after its request, so a
    readable socket with nothing to read is one that was closed."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            hangup = getattr(select, "POLLRDHUP", 0)  # Linux: closed even with unread data
            poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR | hangup)
            ready = poller.poll(0)
            if not ready:
                return False
            if ready[0][1] & (select.POLLHUP | select.POLLERR | hangup):
                return True
        elif not select.select([sock], [], [], 0)[0]:
            return False
        return bool(sock.recv(1, socket.MSG_PEEK) == b"")
    except (OSError, ValueError):  # closed under us: gone too
        return True
