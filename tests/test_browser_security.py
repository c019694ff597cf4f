"""A real headless Chromium attacks the API from a web page; no task may be created.

The security defaults (README, "Security defaults for a local API") exist because any web page
the user opens can make the browser send requests to ``127.0.0.1``. These tests do exactly
that with Debian's ``chromium``: a tiny attacker server (``http.server`` on 127.0.0.1, port 0,
another origin than the API) serves a page whose script tries to submit a task, and Chromium
is run with ``--dump-dom`` so the page can report what it tried. The API runs on a real
cheroot server on 127.0.0.1 behind a recording WSGI wrapper, so each test proves three things:
the page ran and made every attempt (the DOM), each attempt reached the API and was refused
with the expected status (the recording), and the database holds no task (the store).

* Cross-origin page: ``fetch`` in ``no-cors`` mode with a ``text/plain`` body shaped like a
  task, ``fetch`` with ``Content-Type: application/json`` (a CORS preflight, which must fail),
  auto-submitted forms (``text/plain`` crafted so the body is valid task JSON, url-encoded,
  multipart) and ``navigator.sendBeacon``.
* DNS rebinding: the page is loaded from ``http://rebind.test:P`` (``--host-resolver-rules``
  maps the name to 127.0.0.1) served by the attacker; then the attacker hands port P over to
  the API, as a rebound DNS name would, and the page POSTs JSON to ``/tasks`` *same-origin*,
  which no CORS rule stops: only the ``Host: rebind.test:P`` check does. A control run without
  the Host check shows the same page does create a task, so the test can fail.

Chromium is installed by ``scripts/dev.sh test``; without ``/usr/bin/chromium`` these tests are
skipped, saying so. Every wait is bounded; Chromium runs in its own process group, which is
killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.api import ApiConfig, create_app
from service.api_server import ApiServer
from service.task_service import TaskService
from storage import TaskQuery, TaskStore

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60.0  # seconds; bounds every wait in this module
TOKEN = "browser-test-token-5e1f"

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"chromium is not installed: {CHROMIUM} is missing "
        "(scripts/dev.sh test installs Debian's chromium package)",
    ),
    # Nothing here depends on SQLite: every test runs on both backends.
    pytest.mark.backends,
]


# -- the API, recorded ----------------------------------------------------------------------


@dataclass
class Seen:
    """One request as it reached the API, and the API's answer."""

    method: str
    path: str
    host: str
    origin: str | None
    content_type: str
    body: bytes
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class RecordingApp:
    """WSGI wrapper that records every request and response of the API app it wraps."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.changed = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)  # the app reads the same bytes again
        seen = Seen(
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO", ""),
            host=environ.get("HTTP_HOST", ""),
            origin=environ.get("HTTP_ORIGIN"),
            content_type=environ.get("CONTENT_TYPE", ""),
            body=body,
        )

        def recording_start_response(status: str, headers: list[tuple[str, str]],
                                     exc_info: Any = None) -> Any:
            seen.status = int(status.split(" ", 1)[0])
            seen.headers = {k.lower(): v for k, v in headers}
            with self.changed:
                self.seen.append(seen)
                self.changed.notify_all()
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start_response)

    def wait_for(self, predicate: Callable[[list[Seen]], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.seen), timeout)

    def snapshot(self) -> list[Seen]:
        with self.changed:
            return list(self.seen)


@pytest.fixture
def serve_api(service: TaskService) -> Iterator[Callable[..., tuple[ApiServer, RecordingApp]]]:
    """Start create_app(service, config) behind a RecordingApp on 127.0.0.1."""
    servers: list[ApiServer] = []

    def start(config: ApiConfig, port: int = 0) -> tuple[ApiServer, RecordingApp]:
        recorder = RecordingApp(create_app(service, config))
        server = ApiServer(recorder, "127.0.0.1", port)
        server.start()
        servers.append(server)
        return server, recorder

    yield start
    for server in servers:
        server.stop()


# -- the attacker's server --------------------------------------------------------------------


Route = Callable[[http.server.BaseHTTPRequestHandler], tuple[int, str, bytes]]


class AttackerServer:
    """http.server on 127.0.0.1, port 0: serves fixed pages and test-supplied handlers.

    HTTP/1.0, one request per connection, so that Chromium never reuses a connection to it.
    """

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closed = False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return None  # quiet

            def do_GET(self) -> None:
                route = owner.routes.get(urllib.parse.urlsplit(self.path).path)
                if route is None:
                    status, ctype, body = 404, "text/plain", b"not found"
                else:
                    try:
                        status, ctype, body = route(self)
                    except Exception as exc:  # reported to the page, and so to the test
                        status, ctype, body = 500, "text/plain", repr(exc).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="attacker",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self, keep: socket.socket | None = None) -> None:
        """Stop serving, free the port and drop every connection but *keep*.

        Chromium opens spare connections ahead of need; one left open would carry the page's
        next request to this server instead of to whoever listens on the port next.
        Safe to call more than once, from any thread.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(TIMEOUT)
        with self._lock:
            others = [c for c in self._connections if c is not keep]
        for conn in others:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def attacker_server(routes: dict[str, Route]) -> Iterator[AttackerServer]:
    server = AttackerServer(routes)
    try:
        yield server
    finally:
        server.close()


def page(text: str) -> Route:
    body = text.encode()
    return lambda _handler: (200, "text/html; charset=utf-8", body)


# -- Chromium ---------------------------------------------------------------------------------


def run_chromium(url: str, profile: Path, *extra: str) -> str:
    """Load *url* in headless Chromium and return the DOM it dumps once the page settled.

    ``--virtual-time-budget`` lets the page's script run to its end: virtual time stands still
    while a request is in flight, and fast-forwards while the page is idle.
    """
    args = [
        str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions",
        "--disable-dev-shm-usage", "--metrics-recording-only", "--password-store=basic",
        f"--user-data-dir={profile}", "--virtual-time-budget=30000", *extra,
        "--dump-dom", url,
    ]
    # Its own session: the browser, its zygote and renderers form one process group that is
    # killed as a whole below, whatever happens.
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(TIMEOUT)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{err[-4000:]}"
    assert out.strip(), f"chromium dumped no DOM:\n{err[-4000:]}"
    return out


def page_report(dom: str) -> dict[str, Any]:
    """What the page's script wrote into <pre id="report">, as JSON."""
    m = re.search(r'<pre id="report">(.*?)</pre>', dom, re.DOTALL)
    assert m is not None, f"no report in the dumped DOM:\n{dom}"
    report: dict[str, Any] = json.loads(html.unescape(m[1]))
    assert report.get("done") is True, f"the page's script did not finish: {report}"
    return report


# The script helpers every attack page shares: record() writes the report into the DOM.
PAGE_HEAD = """<!doctype html>
<html><head><meta charset="utf-8"><title>attack</title></head><body>
<pre id="report">{}</pre>
<script>
const report = {};
function record(key, value) {
  report[key] = value;
  document.getElementById("report").textContent = JSON.stringify(report);
}
async function attempt(key, fn) {
  try { record(key, "resolved: " + await fn()); }
  catch (e) { record(key, "rejected: " + e.name + ": " + e.message); }
}
</script>
"""


# -- a page on another local origin ----------------------------------------------------------

CROSS_ORIGIN_PAGE = PAGE_HEAD + """
<iframe name="sink_plain"></iframe><iframe name="sink_urlencoded"></iframe>
<iframe name="sink_multipart"></iframe>
<form id="form_plain" method="POST" enctype="text/plain" target="sink_plain"
      action="@API@/tasks"><input type="hidden"
      name='{"action":"csrf-form-plain","data":{"a":"' value='"}}'></form>
<form id="form_urlencoded" method="POST" target="sink_urlencoded" action="@API@/tasks"
      enctype="application/x-www-form-urlencoded"><input type="hidden"
      name="action" value="csrf-form-urlencoded"></form>
<form id="form_multipart" method="POST" target="sink_multipart" action="@API@/tasks"
      enctype="multipart/form-data"><input type="hidden"
      name="action" value="csrf-form-multipart"></form>
<script>
const API = "@API@";
function task(action) { return JSON.stringify({action: action, data: {from: "attacker"}}); }
function submitForm(name) {
  // Into a named iframe, so that this page stays and goes on reporting.
  return new Promise((resolve) => {
    const frame = document.getElementsByName("sink_" + name)[0];
    frame.addEventListener("load", () => resolve("iframe loaded"), {once: true});
    document.getElementById("form_" + name).submit();
  });
}
(async () => {
  record("started", true);
  await attempt("fetch_no_cors_text_plain", async () => {
    const r = await fetch(API + "/tasks", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: task("csrf-nocors-plain")});
    return r.type;
  });
  // In no-cors mode the browser drops a Content-Type that is not CORS-safelisted.
  await attempt("fetch_no_cors_claiming_json", async () => {
    const r = await fetch(API + "/tasks", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "application/json"}, body: task("csrf-nocors-claims-json")});
    return r.type;
  });
  await attempt("fetch_cors_json", async () => {
    const r = await fetch(API + "/tasks", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: task("csrf-fetch-json")});
    return r.status + " " + await r.text();
  });
  await attempt("fetch_cors_read_tasks", async () => {
    const r = await fetch(API + "/tasks");
    return r.status + " " + await r.text();
  });
  await attempt("form_plain", () => submitForm("plain"));
  await attempt("form_urlencoded", () => submitForm("urlencoded"));
  await attempt("form_multipart", () => submitForm("multipart"));
  await attempt("beacon_json_blob", async () => navigator.sendBeacon(API + "/tasks",
    new Blob([task("csrf-beacon-json")], {type: "application/json"})));
  await attempt("beacon_text", async () => navigator.sendBeacon(API + "/tasks",
    task("csrf-beacon-text")));
  // A beacon gives no answer: wait (bounded, on the attacker's side) until it reached the API.
  await attempt("settled", async () => (await fetch("/settle")).status);
  record("done", true);
})();
</script>
</body></html>
"""

# The simple (no preflight) POSTs the page makes, each with a body naming its attempt.
SIMPLE_POSTS = {
    "csrf-nocors-plain": "text/plain",
    "csrf-nocors-claims-json": "text/plain;charset=utf-8",
    "csrf-form-plain": "text/plain",
    "csrf-form-urlencoded": "application/x-www-form-urlencoded",
    "csrf-form-multipart": "multipart/form-data",
    "csrf-beacon-text": "text/plain;charset=utf-8",
}


def _named(seen: Seen) -> str | None:
    return next((name for name in SIMPLE_POSTS if name.encode() in seen.body), None)


@pytest.mark.parametrize("mode", ["loopback default", "beyond loopback, with a token"])
def test_page_on_another_local_origin_cannot_submit_a_task(
    serve_api: Callable[..., tuple[ApiServer, RecordingApp]], store: TaskStore,
    tmp_path: Path, mode: str,
) -> None:
    if mode == "loopback default":
        config, refusal = ApiConfig(), 415  # stopped by the Content-Type check
    else:
        # What main.py configures for --host 0.0.0.0 --token: any Host, a bearer token.
        config, refusal = ApiConfig(token=TOKEN, allowed_hosts=None), 401
    api, recorder = serve_api(config)

    def settle(_handler: http.server.BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        # Well within Chromium's own time limit, so that a lost beacon is reported as such.
        arrived = recorder.wait_for(
            lambda seen: any(_named(s) == "csrf-beacon-text" for s in seen), TIMEOUT / 3)
        return (200 if arrived else 504), "text/plain", b""

    with attacker_server({}) as attacker:
        attacker.routes["/attack.html"] = page(CROSS_ORIGIN_PAGE.replace("@API@", api.url))
        attacker.routes["/settle"] = settle
        dom = run_chromium(f"http://127.0.0.1:{attacker.port}/attack.html", tmp_path / "profile")
    report = page_report(dom)
    attacker_origin = f"http://127.0.0.1:{attacker.port}"
    assert attacker_origin != api.url  # another origin (another port), same loopback host

    # The page ran every attempt, and the browser did what browsers do.
    assert report["started"] is True
    assert report["fetch_no_cors_text_plain"] == "resolved: opaque", report
    assert report["fetch_no_cors_claiming_json"] == "resolved: opaque", report
    assert report["fetch_cors_json"].startswith("rejected: TypeError"), report  # preflight failed
    assert report["fetch_cors_read_tasks"].startswith("rejected: TypeError"), report
    for form in ("form_plain", "form_urlencoded", "form_multipart"):
        assert report[form] == "resolved: iframe loaded", report
    assert report["beacon_text"] == "resolved: true", report
    # (A beacon with a JSON Blob is refused by the browser or preflighted, depending on the
    # Chromium version: either way no JSON POST may arrive, as checked below.)
    assert report["settled"] == "resolved: 200", (report, recorder.snapshot())

    seen = [s for s in recorder.snapshot() if s.origin == attacker_origin]
    # Every simple POST reached the API, from the attacker's origin, and was refused.
    posts = {name: s for s in seen if s.method == "POST" and (name := _named(s)) is not None}
    assert sorted((_named(s) or "?") for s in seen if s.method == "POST") == sorted(SIMPLE_POSTS), \
        [(s.method, s.content_type, s.body) for s in seen]  # each exactly once, nothing else
    for name, seen_post in posts.items():
        assert seen_post.path == "/tasks"
        assert seen_post.content_type.lower().startswith(SIMPLE_POSTS[name]), seen_post
        assert seen_post.status == refusal, seen_post
    # The text/plain form's body is a valid task: nothing but the API's checks stopped it.
    assert json.loads(posts["csrf-form-plain"].body)["action"] == "csrf-form-plain"
    # The JSON fetch got no further than its preflight, which the API did not allow.
    preflights = [s for s in seen if s.method == "OPTIONS"]
    assert preflights, [(s.method, s.path) for s in seen]
    for preflight in preflights:
        assert not 200 <= preflight.status < 300, preflight
    assert not [s for s in seen if "json" in s.content_type.lower()], "a JSON POST got through"
    # No answer ever let another origin in.
    for s in recorder.snapshot():
        assert not [h for h in s.headers if h.startswith("access-control-")], s

    assert store.count(TaskQuery()) == 0


# -- DNS rebinding -------------------------------------------------------------------------------

REBIND_PAGE = PAGE_HEAD + """
<script>
(async () => {
  record("started", true);
  // The attacker now hands this origin's port over to Taskdesk (as a rebound DNS name would).
  await attempt("switch", async () => (await fetch("/switch")).status);
  // Same origin as this page: no CORS rule applies, any Content-Type may be sent.
  await attempt("submit", async () => {
    const r = await fetch("/tasks", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({action: "rebind-attack", data: {from: "attacker"}})});
    return r.status + " " + await r.text();
  });
  await attempt("read", async () => {
    const r = await fetch("/tasks");
    return r.status + " " + await r.text();
  });
  record("done", true);
})();
</script>
</body></html>
"""


@pytest.mark.parametrize(("mode", "expected_status", "expected_tasks"), [
    ("loopback default", 403, 0),
    ("beyond loopback, with a token", 401, 0),
    # Control: without the Host check (and no token) the very same page does submit a task,
    # so the assertions above would catch a regression.
    ("control: no Host check, no token", 202, 1),
])
def test_dns_rebinding_page_cannot_submit_a_task(
    serve_api: Callable[..., tuple[ApiServer, RecordingApp]], store: TaskStore,
    tmp_path: Path, mode: str, expected_status: int, expected_tasks: int,
) -> None:
    config = {
        "loopback default": ApiConfig(),
        "beyond loopback, with a token": ApiConfig(token=TOKEN, allowed_hosts=None),
        "control: no Host check, no token": ApiConfig(allowed_hosts=None),
    }[mode]
    taken_over: list[tuple[ApiServer, RecordingApp]] = []

    with attacker_server({}) as attacker:
        port = attacker.port

        def switch(handler: http.server.BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
            # Runs on the attacker's request thread; the connection of this very request
            # stays open while the port goes to the API.
            attacker.close(keep=handler.connection)
            taken_over.append(serve_api(config, port))
            return 200, "text/plain", b"switched"

        attacker.routes["/rebind.html"] = page(REBIND_PAGE)
        attacker.routes["/switch"] = switch
        dom = run_chromium(f"http://rebind.test:{port}/rebind.html", tmp_path / "profile",
                           "--host-resolver-rules=MAP rebind.test 127.0.0.1")
    report = page_report(dom)

    assert report["started"] is True
    assert report["switch"] == "resolved: 200", report
    assert len(taken_over) == 1
    _, recorder = taken_over[0]
    seen = recorder.snapshot()
    # The browser sent the rebound name, and the page's POST was valid JSON for a task.
    submits = [s for s in seen if s.method == "POST"]
    assert len(submits) == 1, (report, [(s.method, s.path, s.host) for s in seen])
    submit = submits[0]
    assert (submit.path, submit.host) == ("/tasks", f"rebind.test:{port}")
    assert submit.content_type == "application/json"
    assert json.loads(submit.body)["action"] == "rebind-attack"
    assert submit.status == expected_status, submit
    assert report["submit"].startswith(f"resolved: {expected_status} "), report
    if expected_status != 202:
        # Neither can the page read the tasks.
        assert report["read"].startswith(f"resolved: {expected_status} "), report
        assert '"tasks"' not in report["read"], report
    assert store.count(TaskQuery()) == expected_tasks
