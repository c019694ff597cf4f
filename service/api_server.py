"""ApiServer: serves a WSGI app with cheroot on a background thread.

cheroot was chosen over waitress and bottle's wsgiref: it is threaded, keeps connections alive,
and takes a deep listen backlog, so bursts of clients are queued instead of refused. Binding
happens in ``start()`` on the caller's thread, so "port in use" is reported there, with the
port, before anything else starts; ``stop()`` closes the socket and frees the port.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any

from cheroot import wsgi

log = logging.getLogger("taskdesk.api")


class ApiStartError(Exception):
    """The server could not listen; the message names the address and the cause."""


class ApiServer:
    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 8080, threads: int = 64
    ) -> None:
        self.host = host
        self.requested_port = port
        self._server = wsgi.Server((host, port), app, numthreads=threads, request_queue_size=1024)
        # No cheroot limit (its 413 is plain text): the app answers a declared Content-Length
        # over 1 MiB with a JSON 413 and reads at most 1 MiB + 1 byte of a chunked body.
        self._server.max_request_body_size = 0
        # A thread waits for a whole request on each connection it takes, so idle or stalled
        # clients (a crashed script, a browser's preconnects) each hold one until this timeout.
        # Many threads and a short timeout keep a handful of them from starving everyone else.
        self._server.timeout = 10
        self._server.max_request_header_size = 64 * 1024
        # How often the serving loop looks up from accept(); stop() waits up to this long.
        self._server.expiration_interval = 0.1
        self._thread: threading.Thread | None = None

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
        self._server.stop()
        self._thread.join(timeout=10)
        self._thread = None
        log.info("API stopped")
