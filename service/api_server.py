"""ApiServer: serves a WSGI app with cheroot on a background thread.

cheroot was chosen over waitress and bottle's wsgiref: it is threaded, keeps connections alive,
and takes a deep listen backlog, so bursts of clients are queued instead of refused. Binding
happens in ``start()`` on the caller's thread, so "port in use" is reported there, with the
port, before anything else starts; ``stop()`` closes the socket and frees the port.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from typing import Any

from cheroot import errors, server, wsgi
from cheroot.workers.threadpool import WorkerThread

log = logging.getLogger("taskdesk.api")


class ApiStartError(Exception):
    """The server could not listen; the message names the address and the cause."""


# The error message for statuses whose cheroot text is empty ("405", "501") or says nothing
# ("505 ... Cannot fulfill request"), or, for a 500, may describe our internals.
_PLAIN_MESSAGES = {
    405: "method not allowed",  # CONNECT: this is not a proxy
    408: "request timeout: the request was not sent in full in time",
    500: "internal server error",
    501: "unsupported Transfer-Encoding: only chunked is accepted",
    503: "service unavailable",
    505: "HTTP version not supported: use HTTP/1.1 or HTTP/1.0",
}


class _HeaderCounts(dict[bytes, bytes]):
    """A header dict that notes names set twice."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: list[bytes] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if key in self:
            self.repeated.append(key)
        super().__setitem__(key, value)


class _SingleHeaderReader(server.HeaderReader):  # type: ignore[misc]
    """cheroot keeps the last line of a header given twice (joining only list headers): for
    Idempotency-Key that would pick one of two keys without a word, so a second line is a
    400, as a query parameter given twice is."""

    SINGLE = (b"Idempotency-Key",)

    def __call__(self, rfile: Any, hdict: dict[bytes, bytes] | None = None
                 ) -> dict[bytes, bytes]:
        counted = _HeaderCounts()
        super().__call__(rfile, counted)
        for name in self.SINGLE:
            if name in counted.repeated:
                raise ValueError(f"{name.decode()} header given more than once")
        if hdict is None:
            return dict(counted)
        hdict.update(counted)
        return hdict


class _JsonErrorRequest(server.HTTPRequest):
    """Answers the requests cheroot refuses itself in the API's error format.

    cheroot answers what it cannot parse or take (a malformed request line, header or
    Content-Length, an unknown Transfer-Encoding, a request line or headers over the limit,
    HTTP/2, a timeout mid-request) before the app sees it, through ``simple_response``, in
    text/plain. Every API error is ``{"error": ...}`` JSON, and cheroot has no way to ask for
    another content type, so for statuses of 400 and up this writes what cheroot's own
    ``simple_response`` writes (the same status line, Connection: close and close_connection
    on a 413 or 414) with a JSON body. Anything below 400 (cheroot sends none: its 100
    Continue is written elsewhere) goes to cheroot unchanged. It also closes the connection
    after a chunked body the app did not read to its end.

    Both methods override public cheroot methods, but what they write mirrors cheroot's code:
    pyproject.toml allows only the cheroot versions this was checked against, and
    tests/test_cheroot_contract.py compares both answers, head for head, for every status
    cheroot's source sends, so that an upgrade which changes them fails there, saying what.
    """

    header_reader = _SingleHeaderReader()

    def simple_response(self, status: object, msg: str = "") -> None:
        status_line = str(status)
        code = int(status_line[:3]) if status_line[:3].isdigit() else 0
        if code < 400:
            super().simple_response(status, msg)
            return
        text = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg)
        message = _PLAIN_MESSAGES.get(code) or text or status_line[4:] or "error"
        # Compact, like the app's errors; ASCII, so Content-Length is its length in bytes.
        body = json.dumps({"error": message}, separators=(",", ":")).encode()
        head = [f"{self.server.protocol} {status_line}", f"Content-Length: {len(body)}",
                "Content-Type: application/json"]
        if code in (413, 414):
            self.close_connection = True
            if self.response_protocol == "HTTP/1.1":
                head.append("Connection: close")
        try:
            self.conn.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        except OSError as exc:
            if exc.args[0] not in errors.socket_errors_to_ignore:
                raise

    def send_headers(self) -> None:
        # A chunked body the app did not read to its end (refused before reading it, say
        # with a 415, or malformed): its rest would be read as the next request on this
        # connection. cheroot drains only an unread Content-Length body; close instead.
        rfile = getattr(self, "rfile", None)
        if self.chunked_read and not getattr(rfile, "closed", True):
            self.close_connection = True
        super().send_headers()


class _JsonErrorConnection(server.HTTPConnection):
    RequestHandlerClass = _JsonErrorRequest


# What a long answer (an event stream, service/api/event_routes.py) needs beyond WSGI, in each
# request's environ: the client's socket, to notice between events that it hung up (WSGI only
# tells an app so when a write fails, which for a quiet stream could be many seconds later),
# and an Event set when the server stops, so that the stream ends and frees its thread.
ENVIRON_SOCKET = "taskdesk.socket"
ENVIRON_STOPPING = "taskdesk.stopping"


class _Gateway(wsgi.Gateway_10):
    # cheroot's stubs declare the base class's get_environ as returning None.
    def get_environ(self) -> Any:  # type: ignore[override]
        environ = super().get_environ()  # type: ignore[no-untyped-call]
        environ[ENVIRON_SOCKET] = self.req.conn.socket
        return environ


# Threads serving requests. Few: under the interpreter lock, more threads than that only
# share the same CPU more finely, and the slowest requests wait for all the others (at 64
# connections, p99 57 ms with 16 threads, 128 ms with 64, for the same rate). More are started
# only while every thread is held by a client that sends nothing (see _guard).
THREADS = 16
MAX_THREADS = 64
GUARD_SECONDS = 0.25  # how often the guard looks
GROW_BY = 8
SHRINK_AFTER = 20  # looks in a row with the extra threads idle before they are stopped


def serving_threads(http_server: server.HTTPServer) -> int:
    """The live threads of *http_server*'s pool.

    cheroot's ThreadPool keeps no public count (only a private list, which also holds threads
    that have ended), so this counts live WorkerThreads, each of which names the server it
    serves in its documented ``server`` attribute.
    """
    return sum(1 for t in threading.enumerate()
               if isinstance(t, WorkerThread) and t.server is http_server)


class ApiServer:
    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 8080, threads: int = THREADS
    ) -> None:
        self.host = host
        self.requested_port = port
        self._answered = 0  # requests the app has answered; progress, for the guard
        self._stopping = threading.Event()  # set by stop(); event streams end when it is
        self._min_threads = threads
        self._server = wsgi.Server((host, port), self._counting(app), numthreads=threads,
                                   max=max(threads, MAX_THREADS), request_queue_size=1024)
        # cheroot's own error answers in JSON, like the app's (see _JsonErrorRequest). Its one
        # other answer, a 503 when its queue of accepted connections is full, uses the base
        # HTTPRequest; that queue is unbounded here (accepted_queue_size=-1), so it never is.
        self._server.ConnectionClass = _JsonErrorConnection
        self._server.gateway = _Gateway
        # No cheroot body limit (its 413 would not say the limit): the app answers a declared
        # Content-Length over 1 MiB with a JSON 413 and reads at most 1 MiB + 1 byte of a
        # chunked body.
        self._server.max_request_body_size = 0
        # A thread waits for a whole request on each connection it takes, so stalled clients
        # (a crashed script, a client sending half a request) each hold one until this
        # timeout; the guard adds threads meanwhile so that they cannot starve everyone else.
        self._server.timeout = 10
        self._server.max_request_header_size = 64 * 1024
        # No limit on idle keep-alive connections (cheroot's is 10): with one, cheroot closed a
        # connection after its answer once 10 others waited for their next request, so busy
        # clients kept reconnecting, and counting them took a lock shared with the serving loop
        # on every answer (a sixth of the CPU time of a POST). An idle connection costs a file
        # descriptor, not a thread, until the timeout closes it.
        self._server.keep_alive_conn_limit = None  # type: ignore[assignment]  # documented: None = no limit
        # How often the serving loop looks up from accept(); stop() waits up to this long.
        self._server.expiration_interval = 0.1
        self._thread: threading.Thread | None = None
        self._guard_thread: threading.Thread | None = None

    def _counting(self, app: Any) -> Any:
        stopping = self._stopping

        def counted(environ: Any, start_response: Any) -> Any:
            environ[ENVIRON_STOPPING] = stopping
            try:
                return app(environ, start_response)
            finally:
                self._answered += 1  # not atomic, but the guard only asks "did it move?"

        return counted

    def _guard(self) -> None:
        """Add threads while every one is held by a client that sends nothing, and stop the
        extra ones once they have been idle a while.

        Stalled: connections wait for a thread and no request was answered since the last
        look. A busy server answers requests all the time, so a flood of clients never grows
        the pool; twenty clients that each send half a request and stop do.
        """
        pool = self._server.requests
        last, idle_looks = -1, 0
        while not self._stopping.wait(GUARD_SECONDS):
            answered = self._answered
            threads = self.threads
            if pool.qsize and answered == last and threads < pool.max:
                # grow() counts the threads an earlier shrink() stopped against the maximum
                # until the next shrink() drops them from the pool's list, and shrink(0) does
                # only that. Without it every grow-and-shrink cut the room left to grow.
                pool.shrink(0)
                pool.grow(GROW_BY)
                log.warning("every API thread is held by a client that sends nothing; "
                            "started %d more", self.threads - threads)
                idle_looks = 0
            elif threads > self._min_threads and pool.idle >= threads - self._min_threads:
                idle_looks += 1
                if idle_looks >= SHRINK_AFTER:
                    pool.shrink(threads - self._min_threads)
                    idle_looks = 0
            else:
                idle_looks = 0
            last = answered

    @property
    def threads(self) -> int:
        """Threads serving this server's connections now."""
        return serving_threads(self._server)

    @property
    def port(self) -> int:
        addr = self._server.bind_addr
        return int(addr[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and start serving; raises ApiStartError if the address cannot be used."""
        try:
            self._server.prepare()
        except OSError as exc:
            address = f"{self.host}:{self.requested_port}"
            if exc.errno == errno.EADDRINUSE or "in use" in str(exc).lower():
                reason = f"port {self.requested_port} is already in use"
            else:
                reason = exc.strerror or str(exc)
            raise ApiStartError(f"cannot listen on {address}: {reason}") from exc
        self._thread = threading.Thread(target=self._serve, name="taskdesk-api", daemon=True)
        self._thread.start()
        self._guard_thread = threading.Thread(target=self._guard, name="taskdesk-api-guard",
                                              daemon=True)
        self._guard_thread.start()
        log.info("API listening on %s", self.url)

    def _serve(self) -> None:
        try:
            self._server.serve()
        except Exception:
            log.exception("API server stopped unexpectedly")

    def stop(self) -> None:
        """Stop accepting, finish requests in progress, free the port."""
        if self._thread is None:
            return
        self._stopping.set()
        if self._guard_thread is not None:
            self._guard_thread.join()
        self._server.stop()
        self._thread.join(timeout=10)
        self._thread = None
        log.info("API stopped")
