"""Requests to a running Taskdesk, and every way they can fail said in one line.

HTTP/1.1 through transport.py (why not http.client: see there), one keep-alive connection
per run (``taskdesk cancel A B C`` is three requests on it); event streams get connections of
their own (events.py). Whatever goes wrong — nothing listening, a
refused token, a task that does not exist, a Taskdesk too old for a route — becomes a
CliError whose text is what the user reads after ``taskdesk:``, never a traceback.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from service.cli.transport import ClosedError, Connection, ProtocolError, Response
from service.version import VERSION

EXIT_FAILED = 1
TIMEOUT_SECONDS = 30.0
# An event stream sends a comment after 15 s of silence: a stream silent for this long is dead.
STREAM_TIMEOUT_SECONDS = 45.0
ROUTE_NOT_FOUND = "not found"  # the API's error text for a path it has no route for


class CliError(Exception):
    """What a subcommand says as it gives up: one line, then exit *code*."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class RefusedError(CliError):
    """The API answered with an error status: about this request (one task of several, say),
    not about reaching Taskdesk."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> str | None:
        """The API's error text, when the body is Taskdesk's JSON error."""
        try:
            body = self.json()
            return str(body["error"]) if isinstance(body, dict) and "error" in body else None
        except ValueError:
            return None

    @property
    def route_missing(self) -> bool:
        """A 404 for the path itself (no such route here), not for a task or schedule."""
        return self.status == 404 and self.error() == ROUTE_NOT_FOUND


@dataclass(frozen=True)
class TokenNote:
    """Where the token came from, or where it was looked for: what a 401 makes us say."""

    token: str | None
    source: str  # "--token", "TASKDESK_TOKEN", "the token file /x/tasks.db.token"
    missing: str = ""  # without a token: where none was found


def task_path(task_id: str, *rest: str) -> str:
    # An id is the user's text: quoted, so that "a/b" or "?" cannot reach another route.
    return "/".join(["/tasks", quote(task_id, safe=""), *rest])


class Client:
    """The API of the Taskdesk at *url* (``http://host:port``, maybe with a path prefix)."""

    def __init__(self, url: str, token: TokenNote, timeout: float = TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._conn: Connection | None = None
        self._used = False  # whether _conn has carried a request (and may have been closed)

    # -- requests --------------------------------------------------------------------------

    def path(self, path: str) -> str:
        """The request target of an API path, behind the URL's own path if it has one."""
        return self._prefix + path

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"taskdesk-cli/{VERSION}"}
        if self.token.token is not None:
            headers["Authorization"] = f"Bearer {self.token.token}"
        headers.update(extra or {})
        return headers

    def connection(self, timeout: float) -> Connection:
        return Connection(self._host, self._port, timeout, tls=self._https)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Answer:
        """The answer to a request; CliError for a failure of any kind, an error status too."""
        answer = self.send(method, path, body, headers)
        if answer.status >= 400:
            raise self.refusal(answer, method, path)
        return answer

    def send(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Answer:
        """The answer, whatever its status; CliError only when there is none."""
        extra = dict(headers or {})
        data = None
        if body is not None or method == "POST":
            data = json.dumps({} if body is None else body).encode()
            extra["Content-Type"] = "application/json"  # the API's rule for every POST
        while True:
            reused = self._used
            if self._conn is None:
                self._conn = self.connection(self.timeout)
                reused = False
            try:
                self._used = True
                response = self._conn.request(method, self.path(path), self.headers(extra),
                                              data)
                return Answer(response.status, response.headers, response.read())
            except (ClosedError, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                # The server closes a keep-alive connection that stayed idle (a long `wait`)
                # without reading what comes next: the request never ran, send it again once.
                if reused:
                    continue
                raise self.unreachable(exc) from None
            except (OSError, ProtocolError) as exc:
                self.close()
                raise self.unreachable(exc) from None

    def open_stream(self, path: str, headers: dict[str, str],
                    timeout: float) -> tuple[Connection, Response]:
        """A GET whose body is read as it comes, on a connection of its own; CliError when
        nothing answers."""
        conn = self.connection(timeout)
        try:
            return conn, conn.request("GET", self.path(path), self.headers(headers))
        except (OSError, ProtocolError) as exc:
            conn.close()
            raise self.unreachable(exc) from None

    def get_json(self, path: str) -> Any:
        return self.request("GET", path).json()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._used = False

    # -- what went wrong, in one line ------------------------------------------------------

    def unreachable(self, exc: BaseException) -> CliError:
        if isinstance(exc, ConnectionRefusedError):
            return CliError(f"Taskdesk is not running at {self.url} (connection refused)")
        if isinstance(exc, socket.gaierror):
            return CliError(f"cannot find the host of {self.url} ({exc.strerror})")
        if isinstance(exc, TimeoutError):
            return CliError(f"Taskdesk at {self.url} did not answer within "
                            f"{self.timeout:g} s")
        if isinstance(exc, ClosedError):
            return CliError(f"Taskdesk at {self.url} closed the connection without answering")
        if isinstance(exc, ProtocolError):
            return CliError(f"{self.url} does not answer as Taskdesk does ({exc})")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return CliError(f"cannot reach Taskdesk at {self.url} ({reason})")

    def refusal(self, answer: Answer, method: str, path: str) -> CliError:
        """The error an error status stands for: a CliError where no other request can do
        better (no Taskdesk's JSON, a refused token), else RefusedError with the API's text."""
        message = answer.error()
        if message is None:
            return CliError(f"{self.url} answered {method} {path} with HTTP {answer.status} "
                            "(not Taskdesk's JSON)")
        if answer.status == 401:
            return CliError(self._token_refused())
        if answer.route_missing:
            route = path.split("?", 1)[0]
            return CliError(f"Taskdesk at {self.url} does not know {method} {route} (it is "
                            "older than this command line)")
        detail = answer.json().get("detail")
        return RefusedError(f"{message}: {detail}" if detail else message)

    def _token_refused(self) -> str:
        note = self.token
        if note.token is None:
            return ("the API wants a token: pass --token or set TASKDESK_TOKEN "
                    f"({note.missing})")
        return (f"the API refused the token from {note.source}: pass the right one with "
                "--token or TASKDESK_TOKEN")
