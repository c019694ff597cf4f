"""A small Server-Sent Events reader for tests: what a script following GET /events sees."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sse:
    """One block of the stream: an event (``event`` and ``data`` set) or a comment block."""

    id: str | None
    event: str | None
    data: str | None
    comments: tuple[str, ...] = ()

    def json(self) -> Any:
        assert self.data is not None, self
        return json.loads(self.data)


class SseStream:
    """GET *path* on *base_url*; ``status`` and ``headers`` once it answered; ``next()`` the
    next block, waiting up to *timeout* seconds for it (socket.timeout otherwise)."""

    def __init__(self, base_url: str, path: str = "/events",
                 headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port,
                                               timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.last_id: str | None = None

    @property
    def open(self) -> bool:
        return self.status == 200

    def body(self) -> bytes:
        return self.response.read()

    def next(self, timeout: float | None = None) -> Sse:
        if timeout is not None:
            sock = self.conn.sock
            assert sock is not None
            sock.settimeout(timeout)
        fields: dict[str, list[str]] = {}
        comments: list[str] = []
        while True:
            raw = self.response.readline()
            if raw == b"":
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if fields or comments:
                    break
                continue
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        ids = fields.get("id")
        if ids:
            self.last_id = ids[-1]
        data = fields.get("data")
        event = fields.get("event", [None])[-1] if data is not None else None
        return Sse(ids[-1] if ids else None, event, "\n".join(data) if data else None,
                   tuple(comments))

    def next_event(self, timeout: float | None = None) -> Sse:
        """The next block that is an event (comments and id-only blocks skipped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.01, deadline - time.monotonic())
            block = self.next(left)
            if block.event is not None:
                return block

    def events(self, count: int, timeout: float = 10.0) -> list[Sse]:
        deadline = time.monotonic() + timeout
        return [self.next_event(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def close(self) -> None:
        # Shut the socket down for real: http.client's close() may leave the file open.
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.conn.close()
