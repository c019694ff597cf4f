"""The bearer token beyond loopback, and what the logs may contain.

With ``--host`` beyond loopback a token is required (``main.py`` then accepts any ``Host`` and
relies on the token). These tests prove that:

* every wrong token (same length, other length, other case, wrong scheme, lowercase
  ``bearer``, extra spaces, …) is answered byte for byte like a missing one (only ``Date``
  differs), on every route, before routing and before the Content-Type check, so a caller
  without the token learns nothing; the right token works;
* the verdict comes from ``hmac.compare_digest`` on the token's bytes, and from nothing else;
* ``main.py --host 0.0.0.0 --token …`` never writes the token (nor a wrong one) to its log or
  to its files, at any log level, start-up lines included;
* task data (and results and errors quoting it) are logged only at ``DEBUG``: in-process with
  ``caplog`` (plus whatever reaches the process's stderr), with an action whose handler raises
  an exception quoting its data, and in ``main.py`` as a child process. At ``DEBUG`` the data
  does show, which proves the checks can fail.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.api import ApiConfig
from service.task_service import TaskService
from storage import TaskQuery, TaskStatus, TaskStore
from tests.action_helpers import python_action
from tests.conftest import Client
from tests.proc_helpers import TIMEOUT, Api, TaskdeskProcess

# Nothing here depends on SQLite: every test runs on both backends.
pytestmark = pytest.mark.backends

WAIT_MS = int(TIMEOUT * 1000)
# Distinctive, so that finding it in a log can only mean it was written there.
TOKEN = "S3CRET" + secrets.token_hex(8)
# Wrong tokens; none may be logged either.
SAME_LENGTH = "X" * len(TOKEN)
ONE_OFF = TOKEN[:-1] + ("0" if TOKEN[-1] != "0" else "1")

WRONG_AUTHORIZATIONS: dict[str, bytes | None] = {
    "missing": None,
    "empty": b"",
    "same length": b"Bearer " + SAME_LENGTH.encode(),
    "last character differs": b"Bearer " + ONE_OFF.encode(),
    "prefix": b"Bearer " + TOKEN[:-1].encode(),
    "longer": b"Bearer " + TOKEN.encode() + b"0",
    "twice": b"Bearer " + TOKEN.encode() + b" " + TOKEN.encode(),
    "other case": b"Bearer " + TOKEN.swapcase().encode(),
    "scheme only": b"Bearer",
    "scheme and spaces": b"Bearer    ",
    "no scheme": TOKEN.encode(),
    "other scheme": b"Token " + TOKEN.encode(),
    "basic": b"Basic " + base64.b64encode(b"taskdesk:" + TOKEN.encode()),
    "lowercase bearer, wrong token": b"bearer " + SAME_LENGTH.encode(),
    "uppercase BEARER, wrong token": b"BEARER " + ONE_OFF.encode(),
    "extra spaces, wrong token": b"Bearer    " + ONE_OFF.encode() + b"   ",
}
# The scheme is case-insensitive (RFC 7235) and "Bearer" 1*SP token (RFC 6750).
RIGHT_AUTHORIZATIONS = [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer   {TOKEN}"]

UNAUTHORISED_BODY = {"error": "missing or invalid bearer token"}
CHALLENGE = 'Bearer realm="taskdesk"'


# -- raw HTTP -----------------------------------------------------------------------------------


def raw_request(
    port: int, method: str, path: str, authorization: bytes | None,
    body: bytes | None = None, content_type: str = "application/json",
) -> bytes:
    """One request on its own connection; the response exactly as the server sent it."""
    head = [f"{method} {path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode(),
            b"Connection: close"]
    if authorization is not None:
        head.append(b"Authorization: " + authorization)
    if body is not None:
        head += [f"Content-Type: {content_type}".encode(), f"Content-Length: {len(body)}".encode()]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + (body or b""))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def without_date(raw: bytes) -> bytes:
    """The response with its Date header line removed (the one part that may differ)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw
    lines = head.split(b"\r\n")
    dates = [line for line in lines if line.lower().startswith(b"date:")]
    assert len(dates) == 1, raw
    return b"\r\n".join(line for line in lines if line not in dates) + sep + body


def assert_is_the_401(raw: bytes) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 401 Unauthorized", raw
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines[1:])}
    assert headers[b"www-authenticate"] == CHALLENGE.encode(), raw
    assert headers[b"content-type"] == b"application/json", raw
    assert json.loads(body) == UNAUTHORISED_BODY, raw


def port_of(client: Client) -> int:
    return int(client.base_url.rsplit(":", 1)[1])


def beyond_loopback(api_factory: Callable[..., Client]) -> Client:
    """The API as main.py configures it for --host 0.0.0.0 --token TOKEN."""
    return api_factory(ApiConfig(token=TOKEN, allowed_hosts=None))


# -- wrong tokens are answered like a missing one ----------------------------------------------


def test_every_wrong_token_is_answered_exactly_like_a_missing_one(
    api_factory: Callable[..., Client], store: TaskStore
) -> None:
    client = beyond_loopback(api_factory)
    port = port_of(client)
    task = client.post("/tasks", {"action": "uppercase"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert task.status == 202, task
    task_id = task.json()["id"]
    routes: list[tuple[str, str, bytes | None, str]] = [
        ("GET", "/tasks", None, ""),
        ("GET", "/health", None, ""),
        ("GET", "/openapi.json", None, ""),
        ("GET", "/no/such/route", None, ""),  # 401, not 404: routes are not revealed either
        ("POST", "/tasks", b'{"action": "uppercase", "data": {"text": "x"}}', "application/json"),
        ("POST", "/tasks", b"not json", "text/plain"),  # 401, not 415 or 400
        ("POST", f"/tasks/{task_id}/cancel", b"{}", "application/json"),
    ]
    reference = raw_request(port, "GET", "/tasks", None)
    assert_is_the_401(reference)
    expected = without_date(reference)
    before = store.counts()
    for name, authorization in WRONG_AUTHORIZATIONS.items():
        for method, path, body, content_type in routes:
            raw = raw_request(port, method, path, authorization, body, content_type)
            assert without_date(raw) == expected, (name, method, path, raw)
    assert store.counts() == before, "a refused request changed the database"

    for n, right in enumerate(RIGHT_AUTHORIZATIONS):
        ok = client.get("/tasks", headers={"Authorization": right})
        assert ok.status == 200 and ok.json()["total"] == 1 + n, (right, ok)
        accepted = client.post("/tasks", {"action": "uppercase"}, headers={"Authorization": right})
        assert accepted.status == 202, (right, accepted)
    assert store.count(TaskQuery()) == 1 + len(RIGHT_AUTHORIZATIONS)


def test_a_token_that_is_not_utf8_is_answered_like_a_missing_one(
    api_factory: Callable[..., Client], store: TaskStore
) -> None:
    # HTTP header values are bytes; a client may send any of them. A wrong token must get the
    # same 401 whatever its bytes, never an error of another kind.
    port = port_of(beyond_loopback(api_factory))
    expected = without_date(raw_request(port, "GET", "/tasks", None))
    for authorization in [b"Bearer " + TOKEN[:-1].encode() + b"\xe4",
                          b"Bearer \xff\xfe", b"Basic \xe9t\xe9"]:
        for method, path, body in [("GET", "/tasks", None),
                                   ("POST", "/tasks", b'{"action": "uppercase"}')]:
            raw = raw_request(port, method, path, authorization, body)
            assert without_date(raw) == expected, (authorization, method, raw)
    assert store.count(TaskQuery()) == 0


def test_the_verdict_is_hmac_compare_digest_on_the_token_bytes(
    api_factory: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hmac.compare_digest
    calls: list[tuple[Any, Any]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("service.api.app.hmac.compare_digest", spy)
    client = beyond_loopback(api_factory)

    # A wrong token of the same length and one of another length: each is compared, as bytes,
    # against the configured token by compare_digest, and refused.
    for wrong in (SAME_LENGTH, TOKEN + "0"):
        calls.clear()
        assert client.get("/tasks", headers={"Authorization": f"Bearer {wrong}"}).status == 401
        assert calls == [(wrong.encode(), TOKEN.encode())]
    calls.clear()
    assert client.get("/tasks", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert calls == [(TOKEN.encode(), TOKEN.encode())]

    # The verdict is compare_digest's alone: no other comparison lets a token in or out.
    monkeypatch.setattr("service.api.app.hmac.compare_digest", lambda a, b: False)
    assert client.get("/tasks", headers={"Authorization": f"Bearer {TOKEN}"}).status == 401
    monkeypatch.setattr("service.api.app.hmac.compare_digest", lambda a, b: True)
    assert client.get("/tasks", headers={"Authorization": f"Bearer {SAME_LENGTH}"}).status == 200


# -- main.py beyond loopback: no token in the log, task data only at DEBUG --------------------


def api_port_from_lock_file(proc: TaskdeskProcess, db: Path, qtbot: Any) -> int:
    """The port main.py listens on, read from the lock file it writes (at any log level)."""
    lock = db.with_name(db.name + ".lock")
    found: list[str] = []

    def listening() -> bool:
        assert proc.proc.poll() is None, f"taskdesk exited early:\n{proc.log}"
        try:
            url = json.loads(lock.read_text(encoding="utf-8")).get("api_url")
        except (OSError, ValueError):
            return False
        if url:
            found.append(url)
        return bool(url)

    qtbot.waitUntil(listening, timeout=WAIT_MS)
    assert found[0].startswith("http://0.0.0.0:"), found
    return int(found[0].rsplit(":", 1)[1])


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR"])
def test_main_py_beyond_loopback_logs_no_token_and_task_data_only_at_debug(
    tmp_path: Path, qtbot: Any, level: str
) -> None:
    db = tmp_path / "tasks.db"
    marker = "tdsecret-" + secrets.token_hex(6)  # in task data; its uppercase in a result
    proc = TaskdeskProcess(["--headless", "--host", "0.0.0.0", "--token", TOKEN, "--port", "0",
                            "--db", str(db), "--log-level", level, "--work-delay", "0"])
    try:
        port = api_port_from_lock_file(proc, db, qtbot)

        # Wrong tokens: the same 401 as none, on the real process.
        expected = without_date(raw_request(port, "GET", "/stats", None))
        assert_is_the_401(expected)
        for authorization in WRONG_AUTHORIZATIONS.values():
            body = json.dumps({"action": "uppercase", "data": {"text": marker}}).encode()
            raw = raw_request(port, "POST", "/tasks", authorization, body)
            assert without_date(raw) == expected, (authorization, raw)

        api = Api("127.0.0.1", port, TOKEN)
        try:
            ids = []
            for action, data in [("uppercase", {"text": marker}), ("note", {"secret": marker})]:
                reply = api.post("/tasks", {"action": action, "data": data})
                assert reply.status == 202, reply
                ids.append(reply.body["id"])
            qtbot.waitUntil(lambda: all(api.get(f"/tasks/{i}").body["status"] == "completed"
                                        for i in ids), timeout=WAIT_MS)
            result = api.get(f"/tasks/{ids[0]}").body["result"]
            assert result == {"output": marker.upper()}
        finally:
            api.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0, proc.log
    finally:
        proc.kill()

    log = proc.log
    assert proc.proc.returncode == 0
    if level in ("DEBUG", "INFO"):
        # The start-up lines are there, and were checked like every other line.
        assert f"database {db}" in log and f"API listening on http://0.0.0.0:{port}" in log, log
        assert "workers started" in log and "Taskdesk stopped" in log, log
    for secret in (TOKEN, SAME_LENGTH, ONE_OFF):
        assert secret not in log, f"a token is in the {level} log:\n{log}"
    for path in tmp_path.iterdir():  # the database, its WAL, the lock file
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path

    # Task data and results (the marker, in any case) only at DEBUG.
    if level == "DEBUG":
        assert marker.upper() in log, f"the DEBUG log has no task result:\n{log}"
    else:
        assert marker not in log.lower(), f"task data in the {level} log:\n{log}"


# -- in-process: an action whose error quotes its data ------------------------------------------


def _raise_quoting(data: dict[str, Any]) -> Any:
    raise RuntimeError(f"cannot handle {data!r}")


def _echo(data: dict[str, Any]) -> Any:
    return {"echo": data}


def _no_check(data: dict[str, Any]) -> None:
    return None


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_task_data_is_logged_only_at_debug(
    api_factory: Callable[..., Client], pool_factory: Callable[..., Any], service: TaskService,
    store: TaskStore, qtbot: Any, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str], level: str,
) -> None:
    caplog.set_level(getattr(logging, level))
    marker = "tdsecret-" + secrets.token_hex(6)
    service.registry.register(
        python_action("leaky", _raise_quoting, _no_check, "raises, quoting data"))
    service.registry.register(python_action("echo", _echo, _no_check, "returns its data"))
    client = api_factory()

    ids = service.submit_many("echo", {"text": marker}, 3)  # the window's "× N"
    for action in ("echo", "uppercase", "something-else", "leaky"):
        resp = client.post("/tasks", {"action": action, "data": {"text": marker}})
        assert resp.status == 202, resp
        ids.append(resp.json()["id"])
    leaky = ids[-1]
    # Cancel and retry one, and read everything back (the answers hold the data; the log not).
    json_type = {"Content-Type": "application/json"}
    assert client.post(f"/tasks/{ids[3]}/cancel", headers=json_type).status == 200
    assert client.post(f"/tasks/{ids[3]}/retry", headers=json_type).status == 202
    assert marker in client.get("/tasks").body.decode()
    assert marker in client.get(f"/tasks/{leaky}").body.decode()

    pool_factory()
    qtbot.waitUntil(lambda: store.counts()[TaskStatus.COMPLETED] == len(ids) - 1
                    and store.counts()[TaskStatus.FAILED] == 1, timeout=WAIT_MS)
    failed = store.get(leaky)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and marker in failed.error  # the error does quote the data

    captured = capfd.readouterr()
    text = "\n".join([caplog.text, captured.err, captured.out]).lower()
    if level == "DEBUG":
        # The result and the error text, with the data, are logged: the check below can fail.
        assert f"task error id={leaky}" in caplog.text and marker in text, caplog.text
    else:
        assert marker not in text, f"task data in the {level} log:\n{caplog.text}{captured.err}"
        # The failure itself is logged, without the data.
        assert f"task failed id={leaky} action=leaky attempts=3 error_type=RuntimeError" \
            in caplog.text, caplog.text
        if level == "INFO":
            assert f"processing task id={leaky} action=leaky" in caplog.text, caplog.text


def _validate_raising_quoting(data: dict[str, Any]) -> None:
    raise RuntimeError(f"cannot validate {data!r}")


def test_an_unexpected_error_at_submit_does_not_log_task_data(
    api_factory: Callable[..., Client], service: TaskService, store: TaskStore,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    # A validator with a bug raises something other than ValidationError, quoting the data:
    # the API answers 500, and at the default level the data must not reach the log.
    caplog.set_level(logging.INFO)
    marker = "tdsecret-" + secrets.token_hex(6)
    service.registry.register(
        python_action("buggy", _echo, _validate_raising_quoting, "buggy check"))
    client = api_factory()

    resp = client.post("/tasks", {"action": "buggy", "data": {"text": marker}})
    assert resp.status == 500 and resp.json() == {"error": "internal server error"}, resp
    assert store.count(TaskQuery()) == 0

    captured = capfd.readouterr()
    text = "\n".join([caplog.text, captured.err, captured.out]).lower()
    assert "internal error on post /tasks" in caplog.text.lower(), caplog.text
    assert marker not in text, f"task data in the INFO log:\n{caplog.text}{captured.err}"
