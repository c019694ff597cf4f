"""What service/api_server.py assumes of cheroot, each assumption checked on its own.

cheroot offers no public way to answer its own errors in another content type, nor to count
its pool's threads, so api_server.py overrides two public HTTPRequest methods with code that
mirrors cheroot's, and counts the pool's WorkerThreads itself. pyproject.toml allows only the
cheroot versions this file has passed with; before widening that range, run this file with the
new version: a failure here names the assumption that no longer holds, where otherwise a
hostile-input test (or a client) would only see a wrong answer.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import pytest
from cheroot import errors, server, wsgi
from cheroot.workers.threadpool import ThreadPool
from packaging.requirements import Requirement

from service.api_server import ApiServer, _JsonErrorRequest, serving_threads
from tests.proc_helpers import REPO_ROOT

CHEROOT = version("cheroot")
TIMEOUT = 10.0

# Every status cheroot's own code answers with through simple_response, as read from its
# source below. _JsonErrorRequest answers each in JSON, with cheroot's status line and
# connection handling (_PLAIN_MESSAGES words those whose text says nothing).
STATUSES = [
    "400 Bad Request",
    "405 Method Not Allowed",
    "408 Request Timeout",
    "413 Request Entity Too Large",
    "414 Request-URI Too Long",
    "500 Internal Server Error",
    "501 Unimplemented",
    "503 Service Unavailable",
    "505 HTTP Version Not Supported",
]


def test_the_installed_cheroot_is_in_the_range_pyproject_allows() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (cheroot,) = [r for r in map(Requirement, project["project"]["dependencies"])
                  if r.name == "cheroot"]
    assert cheroot.specifier.contains(CHEROOT), (
        f"cheroot {CHEROOT} is installed, outside {cheroot.specifier} in pyproject.toml: if "
        "this file passes with it, widen the range there")


# -- error answers: simple_response --------------------------------------------------------


def test_simple_response_has_the_signature_we_override() -> None:
    signature = inspect.signature(server.HTTPRequest.simple_response)
    assert [(p.name, p.default) for p in signature.parameters.values()] == [
        ("self", inspect.Parameter.empty), ("status", inspect.Parameter.empty), ("msg", "")
    ], f"cheroot {CHEROOT} changed HTTPRequest.simple_response{signature}"


def _sent_statuses() -> set[str]:
    source = inspect.getsource(server) + inspect.getsource(wsgi)
    calls = r"(?:\.simple_response|_conditional_error)\(\s*(?:req,\s*)?'(\d{3} [^']+)'"
    return set(re.findall(calls, source))


def test_cheroot_answers_no_status_we_have_not_checked() -> None:
    new = _sent_statuses() - set(STATUSES)  # fewer is fine: 10.0 had no 503 of its own
    assert not new, (
        f"cheroot {CHEROOT} now answers {sorted(new)} itself: check _JsonErrorRequest and "
        "_PLAIN_MESSAGES in service/api_server.py, then add them to STATUSES here")


def _answer(cls: type[server.HTTPRequest], status: str, protocol: str) -> tuple[
        list[bytes], bytes, bool]:
    """(head lines, body, close_connection) that *cls* writes for *status* over a request
    made with *protocol*."""
    conn = SimpleNamespace(wfile=io.BytesIO())
    request = cls(SimpleNamespace(protocol="HTTP/1.1", ssl_adapter=None), conn)
    request.response_protocol = protocol
    request.simple_response(status, "cheroot's words")
    head, _, body = conn.wfile.getvalue().partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body, request.close_connection


def _without_body_headers(head: list[bytes]) -> list[bytes]:
    return [line for line in head
            if not line.lower().startswith((b"content-type:", b"content-length:"))]


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("status", STATUSES)
def test_json_error_answers_have_cheroots_head(status: str, protocol: str) -> None:
    theirs, their_body, they_close = _answer(server.HTTPRequest, status, protocol)
    ours, body, we_close = _answer(_JsonErrorRequest, status, protocol)
    assert _without_body_headers(ours) == _without_body_headers(theirs), (
        f"cheroot {CHEROOT} answers {status} to {protocol} with {theirs}; "
        f"_JsonErrorRequest.simple_response with {ours}: make it write what cheroot does")
    assert we_close == they_close, f"cheroot {CHEROOT} now sets close_connection={they_close}"
    # What makes the override needed at all: were cheroot's answer JSON, drop it.
    assert b"Content-Type: text/plain" in theirs and their_body == b"cheroot's words"
    assert b"Content-Type: application/json" in ours
    assert f"Content-Length: {len(body)}".encode() in ours
    assert set(json.loads(body)) == {"error"}


def test_the_errors_we_ignore_when_writing_are_cheroots() -> None:
    assert errors.socket_errors_to_ignore, "cheroot no longer lists the socket errors to ignore"


# -- error answers through real servers ------------------------------------------------------


def _app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


HEADER_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """(a plain cheroot server's port, an ApiServer's port), both with the same limits."""
    plain = wsgi.Server(("127.0.0.1", 0), _app, numthreads=2)
    plain.max_request_header_size = HEADER_LIMIT
    plain.max_request_body_size = 0
    plain.prepare()
    thread = threading.Thread(target=plain.serve, daemon=True)
    thread.start()
    ours = ApiServer(_app, port=0, threads=2)
    ours.start()
    try:
        yield int(plain.bind_addr[1]), ours.port
    finally:
        ours.stop()
        plain.stop()
        thread.join(TIMEOUT)


def _exchange(port: int, data: bytes) -> tuple[list[bytes], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {received!r}"
            body += chunk
        return lines, body


BIG = b"a" * HEADER_LIMIT
TRIGGERS = {
    "malformed-request-line": b"GET /tasks\r\n\r\n",
    "http-2": b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
    "connect": b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "transfer-encoding-gzip": b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                              b"application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "uri-too-long": b"GET /" + BIG + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "headers-too-big-1.1": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + BIG + b"\r\n\r\n",
    "headers-too-big-1.0": b"GET / HTTP/1.0\r\nX-Big: " + BIG + b"\r\n\r\n",
    "bad-ipv6-uri": b"GET http://[::1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("data", TRIGGERS.values(), ids=TRIGGERS.keys())
def test_a_real_server_answers_as_cheroot_does_but_in_json(
    ports: tuple[int, int], data: bytes
) -> None:
    plain_port, our_port = ports
    theirs, _ = _exchange(plain_port, data)
    ours, body = _exchange(our_port, data)
    assert _without_body_headers(ours) == _without_body_headers(theirs), (
        f"cheroot {CHEROOT}: {theirs} against ours {ours}")
    assert b"Content-Type: application/json" in ours
    assert set(json.loads(body)) == {"error"}


# -- closing after an unread chunked body: send_headers --------------------------------------


def test_send_headers_is_the_method_we_extend() -> None:
    params = inspect.signature(server.HTTPRequest.send_headers).parameters
    assert list(params) == ["self"], f"cheroot {CHEROOT} changed HTTPRequest.send_headers"


def test_a_request_has_the_attributes_we_read_and_set() -> None:
    request = server.HTTPRequest(SimpleNamespace(ssl_adapter=None), SimpleNamespace())
    for name in ("chunked_read", "close_connection", "response_protocol", "server", "conn"):
        assert hasattr(request, name), f"cheroot {CHEROOT}: HTTPRequest has no {name}"
    assert server.HTTPConnection.RequestHandlerClass is server.HTTPRequest


def test_a_chunked_body_says_when_it_was_read_to_its_end() -> None:
    body = server.ChunkedRFile(io.BytesIO(b"5\r\nhello\r\n0\r\n\r\n"), 1000)
    assert body.closed is False
    assert body.read(3) == b"hel"
    assert body.closed is False
    assert body.read() == b"lo"
    assert body.closed is True, f"cheroot {CHEROOT}: ChunkedRFile.closed no longer says so"


# -- the server's settings and its pool ------------------------------------------------------

# Attributes ApiServer sets on cheroot's server: setting a renamed one would do nothing.
SERVER_ATTRIBUTES = ["ConnectionClass", "max_request_body_size", "timeout",
                     "max_request_header_size", "keep_alive_conn_limit", "expiration_interval",
                     "requests", "bind_addr"]


@pytest.mark.parametrize("name", SERVER_ATTRIBUTES)
def test_the_server_attributes_we_set_exist(name: str) -> None:
    plain = wsgi.Server(("127.0.0.1", 0), _app)
    assert hasattr(plain, name), f"cheroot {CHEROOT}: its server has no {name} any more"


def test_the_pool_members_the_guard_uses() -> None:
    # qsize and idle are read, not called: were they methods, `if pool.qsize` would always
    # be true and the guard would grow the pool at every look.
    for name in ("qsize", "idle"):
        assert isinstance(inspect.getattr_static(ThreadPool, name), property), name
    for name in ("grow", "shrink"):
        assert list(inspect.signature(getattr(ThreadPool, name)).parameters) == [
            "self", "amount"], name
    pool = ThreadPool(SimpleNamespace(), min=2, max=5)
    assert (pool.min, pool.max) == (2, 5)


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_pool_counts_and_grows_again_as_the_guard_expects() -> None:
    plain = wsgi.Server(("127.0.0.1", 0), _app, numthreads=1, max=3)
    plain.prepare()  # starts the pool
    pool = plain.requests
    try:
        assert serving_threads(plain) == 1, (
            f"cheroot {CHEROOT}: the pool's threads are no longer WorkerThreads naming their "
            "server")
        pool.grow(2)  # returns once they have started
        assert serving_threads(plain) == 3
        pool.shrink(2)
        _wait_for(lambda: serving_threads(plain) == 1)
        # Stopped threads still count against max in grow() until shrink() drops them;
        # shrink(0) does only that, and the guard calls it before each grow().
        pool.shrink(0)
        pool.grow(2)
        assert serving_threads(plain) == 3, (
            f"cheroot {CHEROOT}: after shrink(0) the pool did not grow back to its maximum")
    finally:
        plain.stop()
    _wait_for(lambda: serving_threads(plain) == 0)
