"""HTTP/1.1 over a socket: the little of it the command line needs, and nothing to import.

Why not http.client: importing it takes 25 ms here (40 under load), a sixth to a quarter of
the 150 ms ``taskdesk list`` may take, because it parses headers with the email package and
loads ssl whether or not it is used. What Taskdesk's API needs is small: a request with a
JSON body, an answer with ``Content-Length`` or chunked (event streams), keep-alive. TLS is
loaded only for an ``https://`` URL (Taskdesk itself serves plain HTTP; a proxy in front may
not).

A ``Connection`` carries one request at a time; its ``Response`` is read whole (``read``) or
line by line as it arrives (``readline``, for Server-Sent Events). A server that closed a
kept-alive connection before answering raises ``ClosedError``, so that the caller can send again.
"""

from __future__ import annotations

import contextlib
import io
import socket

MAX_LINE = 65536  # a status line, a header, a chunk size line
MAX_HEADERS = 100


class ProtocolError(Exception):
    """What came back is not HTTP as we speak it."""


class ClosedError(ConnectionResetError):
    """The server closed the connection before sending an answer."""


class Response:
    def __init__(self, status: int, reason: str, headers: dict[str, str],
                 stream: io.BufferedReader, method: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # names in lower case; a repeated header's last value
        self._stream = stream
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left: int | None = None  # bytes left in the body (or in the current chunk)
        self._done = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        self._buffer = b""
        if not self._chunked and not self._done:
            length = headers.get("content-length")
            if length is not None:
                if not length.strip().isdigit():
                    raise ProtocolError(f"bad Content-Length {length!r}")
                self._left = int(length)
                self._done = self._left == 0
        # Without a length, the body ends when the server closes: the connection is spent.
        self.reusable = (self._chunked or self._left is not None or self._done) and \
            headers.get("connection", "").lower() != "close"

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read (the connection can carry another request)."""
        return self._done and not self._buffer

    def read(self) -> bytes:
        """The rest of the body."""
        parts = [self._buffer]
        self._buffer = b""
        while not self._done:
            parts.append(self._next_piece())
        return b"".join(parts)

    def readline(self) -> bytes:
        """The next line of the body, with its line end; b"" at the end of the body."""
        while b"\n" not in self._buffer and not self._done:
            self._buffer += self._next_piece()
        line, sep, rest = self._buffer.partition(b"\n")
        self._buffer = rest
        return line + sep

    def _next_piece(self) -> bytes:
        if self._chunked:
            return self._next_chunk()
        if self._left is None:
            piece = self._stream.read1(MAX_LINE)
            self._done = not piece
            return bytes(piece)
        piece = self._stream.read1(min(self._left, MAX_LINE))
        if not piece:
            raise ProtocolError("the connection closed in the middle of the body")
        self._left -= len(piece)
        self._done = self._left == 0
        return bytes(piece)

    def _next_chunk(self) -> bytes:
        if not self._left:
            if self._left == 0:  # the end of the previous chunk's data: its CRLF
                _line(self._stream)
            size_line = _line(self._stream).split(b";", 1)[0].strip()
            try:
                self._left = int(size_line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from None
            if self._left == 0:
                while _line(self._stream).strip():  # trailers, up to the blank line
                    pass
                self._done = True
                return b""
        piece = self._stream.read1(self._left)
        if not piece:
            raise ProtocolError("the connection closed in the middle of a chunk")
        self._left -= len(piece)
        return bytes(piece)


def _line(stream: io.BufferedReader) -> bytes:
    line = stream.readline(MAX_LINE + 1)
    if not line:
        raise ProtocolError("the connection closed in the middle of the answer")
    if len(line) > MAX_LINE:
        raise ProtocolError("a line of the answer is too long")
    return line


class Connection:
    def __init__(self, host: str, port: int, timeout: float, *, tls: bool = False) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.tls = tls
        self.sock: socket.socket | None = None
        self._stream: io.BufferedReader | None = None
        self._response: Response | None = None

    def _connect(self) -> None:
        # Bytes, not text: for text, getaddrinfo loads the idna codec (2 ms) even for an IP.
        host = self.host.encode("ascii") if self.host.isascii() else self.host.encode("idna")
        sock = socket.create_connection((host, self.port), self.timeout)  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            import ssl  # only for https://

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
        self._stream = sock.makefile("rb")

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes | None = None) -> Response:
        """Send a request and read the answer's head; the body is read from the Response
        (before the next request on this connection)."""
        previous = self._response
        if previous is not None and not (previous.reusable and previous.complete):
            self.close()
        if self.sock is None:
            self._connect()
        assert self.sock is not None and self._stream is not None
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + (body or b""))
        first = self._stream.readline(MAX_LINE + 1)
        if not first:
            raise ClosedError("the server closed the connection without answering")
        parts = first.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP answer: {first[:40]!r}")
        found: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = _line(self._stream).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"not a header: {line[:40]!r}")
            found[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError("too many headers")
        response = Response(int(parts[1]), parts[2] if len(parts) > 2 else "", found,
                            self._stream, method)
        if parts[0] == "HTTP/1.0" and found.get("connection", "").lower() != "keep-alive":
            response.reusable = False
        self._response = response
        return response

    def shutdown(self) -> None:
        """End a read blocked on this connection in another thread, as at the end of the
        answer (closing the socket under it would not wake it up on every system)."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._response = None
