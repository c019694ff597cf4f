"""The HTTP API: a bottle application built by ``create_app(service)``.

Every response body is JSON, errors included. Requests are checked, before routing, for the
security defaults of a local API: a loopback ``Host`` header (so a web page on a rebound DNS
name cannot reach it), a bearer token when one is configured, ``Content-Type:
application/json`` on every POST (so a page cannot post a plain form) and a 1 MiB body limit.
The app runs on the API server's threads and never touches a Qt object.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import bottle

from service.errors import (
    ConflictError,
    InvalidTransitionError,
    TaskNotFoundError,
    ValidationError,
)
from service.json_limits import may_be_unstorable, unstorable
from service.openapi import openapi_document
from service.task_service import TaskService, dumps
from storage import DatabaseDamagedError, StorageUnavailableError, TaskStatus

log = logging.getLogger("taskdesk.api")

MAX_BODY_BYTES = 1024 * 1024
SUBMISSION_FIELDS = frozenset({"action", "data", "priority", "delay", "run_at", "after"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 2**63 - 1  # SQLite's largest integer
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

# bottle keeps the body in memory up to this size and refuses (413) larger JSON bodies.
bottle.BaseRequest.MEMFILE_MAX = MAX_BODY_BYTES


@dataclass
class ApiConfig:
    token: str | None = None
    # Host header names accepted; None accepts any (used when bound beyond loopback, where a
    # token is required instead).
    allowed_hosts: frozenset[str] | None = LOOPBACK_NAMES
    # Extra fields for GET /health and GET /stats, supplied by whoever runs the workers.
    worker_stats: Callable[[], dict[str, int]] = field(default=lambda: {"busy": 0, "total": 0})
    # What is wrong right now (a crashed worker, an unwritable database); empty when all is well.
    problems: Callable[[], list[str]] = field(default=list)
    version: str = "0"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> NoReturn:
    raise bottle.HTTPResponse(
        body=dumps(body),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def json_text_response(status: int, text: str) -> NoReturn:
    """Like json_response, for JSON that is already text."""
    raise bottle.HTTPResponse(body=text, status=status,
                              headers={"Content-Type": "application/json"})


def json_error(
    status: int, message: str, headers: dict[str, str] | None = None, detail: str | None = None
) -> NoReturn:
    body = {"error": message} if detail is None else {"error": message, "detail": detail}
    json_response(status, body, headers)


_HOST_HEADER = re.compile(r"^(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]@/\s]+))(?::\d{1,5})?$")


def _host_name(host_header: str) -> str | None:
    """'[::1]:8080' → '::1', 'localhost:8080' → 'localhost'; None if it is not a plain host."""
    m = _HOST_HEADER.match(host_header.strip().lower())
    if m is None:
        return None
    return m["ip6"] or m["name"]


def _read_body() -> bytes:
    request = bottle.request
    if request.content_length > MAX_BODY_BYTES:
        json_error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    # cheroot has already decoded a chunked body; bottle would try to decode it again.
    stream = request.environ["wsgi.input"] if request.chunked else request.body
    try:
        raw: bytes = stream.read(MAX_BODY_BYTES + 1)
    except ValueError as exc:  # cheroot's chunked decoding: a bad size line or terminator
        # The server closes the connection after this answer (the rest of the body is unread).
        json_error(400, f"malformed chunked body: {exc}")
    if len(raw) > MAX_BODY_BYTES:
        json_error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def _decode_json(raw: bytes) -> Any:
    def reject_constant(name: str) -> NoReturn:
        raise ValueError(f"{name} is not valid JSON")

    if not raw.strip():
        json_error(400, "invalid JSON", detail="the request body is empty")
    try:
        value = json.loads(raw, parse_constant=reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        json_error(400, "invalid JSON", detail="nested too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        json_error(400, "invalid JSON", detail=str(exc))
    _check_decoded(raw, value)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with a name given twice is refused, not read as its last value: which one
    wins differs between parsers, so a body could mean one thing to a proxy or a log and
    another here (RFC 7493, I-JSON, forbids it; it forbids lone surrogates too, see below)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate name {key!r} in an object")
            seen.add(key)
    return obj


def _check_decoded(raw: bytes, value: Any) -> None:
    """Refuse JSON that Python parses but Taskdesk could not store and give back (see
    service/json_limits.py). Bodies that cannot hold such values, almost all, are not walked."""
    if may_be_unstorable(raw):
        problem = unstorable(value)
        if problem is not None:
            json_error(400, "invalid JSON", detail=problem)


def _query_value(name: str) -> str | None:
    """A query parameter as bottle gives it. One given twice is refused: frameworks differ in
    which one they use (bottle takes the last), so a filter could silently not be the one the
    client, or a proxy that checked the first, meant."""
    values: list[str] = bottle.request.query.getall(name)
    if len(values) > 1:
        json_error(400, f"{name} given more than once")
    return values[0] if values else None


def _query_text(name: str) -> str | None:
    """A query parameter as text; bottle hands them over decoded as latin-1."""
    raw = _query_value(name)
    if raw is None or raw == "":
        return None
    try:
        return str(raw.encode("latin-1").decode("utf-8"))
    except UnicodeError:
        json_error(400, f"{name} must be UTF-8 text")


_INTEGER = re.compile(r"-?[0-9]+")


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = _query_value(name)
    if raw is None or raw == "":
        return default
    # Decimal digits only: int() would also take " 5", "+5", "1_0" and other scripts' digits
    # ("٥"), none of which is an integer in the documented sense.
    if _INTEGER.fullmatch(raw) is None:
        json_error(400, f"{name} must be an integer")
    # Past 19 significant digits it is out of range anyway (int() refuses over 4,300).
    value = int(raw) if len(raw.lstrip("-").lstrip("0")) <= 19 else high + 1
    if not low <= value <= high:
        json_error(400, f"{name} must be between {low} and {high}")
    return value


def create_app(service: TaskService, config: ApiConfig | None = None) -> bottle.Bottle:
    cfg = config or ApiConfig()
    app = bottle.Bottle()
    app.config["json.enable"] = False  # every route returns JSON text it made itself
    token = cfg.token.encode() if cfg.token else None

    def error_page(err: bottle.HTTPError) -> str:
        # bottle's own errors (404, 405, 500, its 413/400 from body parsing) as JSON.
        bottle.response.content_type = "application/json"
        if err.status_code >= 500:
            log.error("internal error on %s %s: %s", bottle.request.method,
                      bottle.request.path, type(err.exception).__name__)
            return dumps({"error": "internal server error"})
        message = {404: "not found", 405: "method not allowed"}.get(
            err.status_code, str(err.body) if err.body else err.status_line
        )
        return dumps({"error": message})

    app.default_error_handler = error_page  # type: ignore[method-assign]

    def json_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
        """Plugin: what a route raises becomes a JSON error, never bottle's catch-all (which
        prints the exception's message, possibly quoting task data, to stderr)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except bottle.HTTPResponse:
                raise
            except StorageUnavailableError as exc:
                # Disk full, database locked too long, read-only file: nothing was changed,
                # and the same request can succeed later.
                log.warning("%s %s: %s", bottle.request.method, bottle.request.path, exc)
                json_error(503, str(exc), {"Retry-After": "5"})
            except DatabaseDamagedError as exc:
                # Corrupted or truncated under us: retrying cannot help, so a 500 that says
                # so, not a 503 (SQLite's text names no data, only the damage).
                log.error("%s %s: %s", bottle.request.method, bottle.request.path, exc)
                json_error(500, str(exc))
            except Exception as exc:
                log.error("internal error on %s %s: %s", bottle.request.method,
                          bottle.request.path, type(exc).__name__)
                log.debug("internal error details", exc_info=True)
                json_error(500, "internal server error")

        return wrapper

    app.install(json_errors)

    @app.hook("before_request")
    def check_request() -> None:
        request = bottle.request
        # Raw header text (bytes decoded as latin-1 by the server): bottle's get_header would
        # re-decode it as UTF-8 and raise on anything else, a 500 instead of a 403 or 401.
        environ = request.environ
        if cfg.allowed_hosts is not None:
            host = environ.get("HTTP_HOST")
            if host is not None and _host_name(host) not in cfg.allowed_hosts:
                json_error(403, "forbidden Host header; use localhost or 127.0.0.1")
        if token is not None:
            scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            presented = value.strip().encode("latin-1")  # the bytes sent; a UTF-8 token matches
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented, token):
                json_error(401, "missing or invalid bearer token",
                           {"WWW-Authenticate": 'Bearer realm="taskdesk"'})
        if request.method == "POST":
            # A path that does not exist or does not take POST is a 404 or 405 whatever the
            # Content-Type (not a 415 that sends the client to fix the wrong thing): match the
            # route first; the router raises those errors, which error_page turns into JSON.
            app.router.match(request.environ)
            media_type = request.content_type.split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                json_error(415, "Content-Type must be application/json")

    @app.post("/tasks")
    def submit_task() -> NoReturn:
        body = _decode_json(_read_body())
        if not isinstance(body, dict):
            json_error(400, "request body must be a JSON object")
        unknown = sorted(set(body) - SUBMISSION_FIELDS)
        if unknown:
            json_error(400, f"unknown field(s): {', '.join(unknown)}")
        key = bottle.request.environ.get("HTTP_IDEMPOTENCY_KEY")
        try:
            added = service.accept(
                body.get("action"), body.get("data"), priority=body.get("priority"),
                delay=body.get("delay"), run_at=body.get("run_at"), after=body.get("after"),
                idempotency_key=key,
            )
        except ConflictError as exc:
            json_error(409, str(exc))
        except ValidationError as exc:
            json_error(400, str(exc))
        task = added.task
        json_response(202 if added.created else 200, {"id": task.id, "status": task.status})

    @app.get("/tasks")
    def list_tasks() -> NoReturn:
        status = _query_text("status")
        action = _query_text("action")
        limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int_param("offset", 0, 0, MAX_OFFSET)
        try:
            listed, count, total = service.list_json(status, action, limit, offset)
        except ValidationError as exc:  # an unknown status
            json_error(400, str(exc))
        json_text_response(200, f'{{"tasks":[{listed}],"count":{count},"total":{total}}}')

    @app.get("/tasks/<task_id>")
    def get_task(task_id: str) -> NoReturn:
        try:
            json_text_response(200, service.get(task_id).to_json())
        except TaskNotFoundError as exc:
            json_error(404, str(exc))

    def change(task_id: str, apply: Callable[[str], Any], ok_status: int) -> NoReturn:
        _parse_optional_empty_body()
        try:
            task = apply(task_id)
        except TaskNotFoundError as exc:
            json_error(404, str(exc))
        except InvalidTransitionError as exc:
            json_error(409, str(exc))
        json_text_response(ok_status, task.to_json())

    @app.post("/tasks/<task_id>/retry")
    def retry_task(task_id: str) -> NoReturn:
        change(task_id, service.retry, 202)

    @app.post("/tasks/<task_id>/cancel")
    def cancel_task(task_id: str) -> NoReturn:
        _parse_optional_empty_body()
        try:
            task = service.cancel(task_id)
        except TaskNotFoundError as exc:
            json_error(404, str(exc))
        except InvalidTransitionError as exc:
            json_error(409, str(exc))
        # A running task was asked to stop: accepted, it ends cancelled when its attempt ends.
        json_text_response(202 if task.status == TaskStatus.RUNNING else 200, task.to_json())

    @app.get("/stats")
    def stats() -> NoReturn:
        counts = service.counts()
        completed, failed = service.rates.rates(10)
        json_response(200, {
            "counts": counts,
            "queue_depth": counts[TaskStatus.QUEUED],
            "workers": cfg.worker_stats(),
            "throughput": {"completed_per_second": completed, "failed_per_second": failed,
                           "window_seconds": 10},
        })

    @app.get("/health")
    def health() -> NoReturn:
        problems = cfg.problems()
        json_response(200, {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "version": cfg.version,
            "workers": cfg.worker_stats(),
        })

    @app.get("/openapi.json")
    def openapi() -> NoReturn:
        json_response(200, openapi_document(cfg.version))

    return app


def _parse_optional_empty_body() -> None:
    """retry and cancel take no body: accept none, or an empty JSON object."""
    raw = _read_body()
    if raw.strip() and _decode_json(raw) != {}:
        json_error(400, "this request takes no body (or an empty JSON object)")
