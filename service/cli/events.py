"""Knowing when tasks change: GET /events read on a thread, or polling when there is no stream.

``TaskWatch`` opens the event stream before the caller first reads its tasks, so that no change
between that read and the stream's start can be missed. A thread reads the stream (a socket
read cannot be given a timeout without spoiling the stream, and ``log --follow`` must wake up
on its own too) and hands over, for the watched tasks only, the status each event carries.
The caller re-reads a task (GET /tasks/{id}) before believing it finished, as the API asks.

- The stream ends or breaks (Taskdesk restarting): reconnect with ``Last-Event-ID``, then
  tell the caller to re-read everything (what it missed is either replayed or announced by
  an ``event: resync``, which also means "re-read everything").
- The server will not stream to us: 503 (every stream slot taken, say by other ``taskdesk
  wait`` in a shell loop) or 404 (a Taskdesk without /events): poll every POLL_SECONDS.
- Nothing answers for RECONNECT_SECONDS: give up with a CliError.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

from service.cli.client import STREAM_TIMEOUT_SECONDS, Answer, Client, CliError
from service.cli.transport import Connection, Response

POLL_SECONDS = 0.5
RECONNECT_PAUSE_SECONDS = 0.5
RECONNECT_SECONDS = 30.0
STOP_SECONDS = 2.0  # how long closing a watch waits for its reader to end
DELETED = "deleted"  # the status a watched task gets from an `event: deleted`


@dataclass(frozen=True)
class ServerEvent:
    """One event of a Server-Sent Events stream."""

    id: str | None
    name: str  # "message" when the event named none
    data: str


def read_events(response: Response,
                seen: list[str | None]) -> Iterator[ServerEvent]:
    """The events of *response* as they arrive; ``seen[0]`` follows the last id the stream
    gave, in events and in comment blocks alike (a filtered stream moves it on in its
    keep-alives), for a ``Last-Event-ID`` on reconnection."""
    name, data = "", list[str]()
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield ServerEvent(seen[0], name or "message", "\n".join(data))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "data":
            data.append(value)
        elif key == "event":
            name = value
        elif key == "id":
            seen[0] = value


@dataclass
class Changes:
    """What happened to watched tasks since the caller last asked."""

    # Each task an event was about, with the status it carried ("deleted" for a deletion).
    statuses: dict[str, str] = field(default_factory=dict)
    # Anything may have changed (a resync, a reconnection, a polling round): re-read them all.
    everything: bool = False


class _Lost:
    def __init__(self, message: str) -> None:
        self.message = message


_EVERYTHING = object()  # what the reader thread queues for "re-read everything"
_POLL = object()  # ... for "the server will not stream to us: poll from now on"


class TaskWatch:
    """Changes of the tasks *ids*; a context manager (it holds a connection and a thread)."""

    def __init__(self, client: Client, ids: set[str]) -> None:
        self.client = client
        self.ids = ids
        self.polling = False
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._conn: Connection | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._next_poll = 0.0

    def __enter__(self) -> TaskWatch:
        response = self._connect(None)
        if response is None:
            self.polling = True
        else:
            self._thread = threading.Thread(target=self._read, args=(response,),
                                            name="taskdesk-events", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closed = True
        if self._conn is not None:
            # The reader's blocking read then ends as at the end of the stream, and the
            # reader closes the connection itself (closing it under the read would break it).
            self._conn.shutdown()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)

    def next_change(self, timeout: float | None) -> Changes | None:
        """The changes since the last call, waiting up to *timeout* seconds (None: as long as
        it takes) for the first; None when nothing happened meanwhile."""
        if self.polling:
            return self._poll_round(timeout)
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        changes = Changes()
        while True:
            if isinstance(item, tuple):
                task_id, status = item
                changes.statuses[task_id] = status
            elif isinstance(item, _Lost):
                raise CliError(item.message)
            else:
                changes.everything = True
                self.polling = self.polling or item is _POLL
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return changes

    def _poll_round(self, timeout: float | None) -> Changes | None:
        wait = max(0.0, self._next_poll - time.monotonic())
        if timeout is not None and timeout < wait:
            time.sleep(timeout)
            return None
        time.sleep(wait)
        self._next_poll = time.monotonic() + POLL_SECONDS
        return Changes(everything=True)

    # -- the stream ------------------------------------------------------------------------

    def _connect(self, last_id: str | None) -> Response | None:
        """The stream (from after *last_id*), or None when the server will not stream to us.
        Raises CliError when it cannot be reached or refuses us otherwise (a bad token)."""
        extra = {"Accept": "text/event-stream"}
        if last_id is not None:
            extra["Last-Event-ID"] = last_id
        conn, response = self.client.open_stream("/events", extra, STREAM_TIMEOUT_SECONDS)
        if response.status != 200:
            try:
                body = response.read()
            except (OSError, ValueError):
                body = b""
            conn.close()
            if response.status in (404, 503):
                return None
            raise self.client.refusal(Answer(response.status, response.headers, body), "GET",
                                      "/events")
        self._conn = conn
        return response

    def _read(self, response: Response) -> None:
        seen: list[str | None] = [None]
        while True:
            try:
                for event in read_events(response, seen):
                    self._take(event)
            except Exception:  # broken off, however it was: reconnect below
                pass
            if self._closed:
                if self._conn is not None:
                    self._conn.close()
                return
            next_response = self._reconnect(seen[0])
            if next_response is None:
                return
            response = next_response
            self._queue.put(_EVERYTHING)

    def _take(self, event: ServerEvent) -> None:
        if event.name == "resync":
            self._queue.put(_EVERYTHING)
        elif event.name in ("task", DELETED):
            try:
                task = json.loads(event.data)
                task_id, status = task["id"], task["status"]
            except (ValueError, KeyError, TypeError):
                return
            if task_id in self.ids:
                self._queue.put((task_id, DELETED if event.name == DELETED else status))

    def _reconnect(self, last_id: str | None) -> Response | None:
        """A new stream, once Taskdesk answers again; None after telling the caller to poll
        (no stream for us) or that Taskdesk is gone."""
        old = self._conn
        if old is not None:
            old.close()
        deadline = time.monotonic() + RECONNECT_SECONDS
        while not self._closed:
            try:
                response = self._connect(last_id)
            except CliError as exc:
                if time.monotonic() > deadline:
                    self._queue.put(_Lost(f"lost the connection: {exc}"))
                    return None
                time.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            if response is None:
                self._queue.put(_POLL)
            elif self._closed and self._conn is not None:  # closed while we connected
                self._conn.close()
                return None
            return response
        return None
