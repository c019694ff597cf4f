"""The HTTP API: a bottle application built by ``create_app(service)`` from route modules.

Every response body is JSON, errors included. Requests are checked, before routing, for the
security defaults of a local API: a loopback ``Host`` header (so a web page on a rebound DNS
name cannot reach it), a bearer token when one is configured, ``Content-Type:
application/json`` on every POST (so a page cannot post a plain form) and a 1 MiB body limit.
The app runs on the API server's threads and never touches a Qt object.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bottle

from service.api import (
    action_routes,
    event_routes,
    nodes_routes,
    queue_routes,
    schedule_routes,
    task_routes,
)
from service.api.event_routes import HEARTBEAT_SECONDS, MAX_STREAMS
from service.api.http_io import host_name, json_error
from service.event_log import EventLog
from service.schedules import Scheduler
from service.task_service import TaskService, dumps
from storage import DatabaseDamagedError, StorageUnavailableError

log = logging.getLogger("taskdesk.api")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


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
    # GET /events (event_routes.py): the log streams read (None: one fed by the service from
    # the app's creation), how many streams may be open at once (each holds a server thread:
    # keep it well below the server's 16) and the seconds of silence before a keep-alive.
    events: EventLog | None = None
    max_event_streams: int = MAX_STREAMS
    event_heartbeat_seconds: float = HEARTBEAT_SECONDS
    # The schedules of the actions file, for /schedules; None: there are none.
    schedules: Scheduler | None = None


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

    def check_json_content_type() -> None:
        content_type = bottle.request.environ.get("CONTENT_TYPE", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            json_error(415, "Content-Type must be application/json")

    def json_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
        """Plugin: what a route raises becomes a JSON error, never bottle's catch-all (which
        prints the exception's message, possibly quoting task data, to stderr)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                if bottle.request.method == "POST":
                    # Here, once the router has found the route: a path that does not exist
                    # or does not take POST is a 404 or 405 whatever the Content-Type (not a
                    # 415 that sends the client to fix the wrong thing).
                    check_json_content_type()
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
            if host is not None and host_name(host) not in cfg.allowed_hosts:
                json_error(403, "forbidden Host header; use localhost or 127.0.0.1")
        if token is not None:
            scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            presented = value.strip().encode("latin-1")  # the bytes sent; a UTF-8 token matches
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented, token):
                json_error(401, "missing or invalid bearer token",
                           {"WWW-Authenticate": 'Bearer realm="taskdesk"'})

    # Each module adds its routes; they share the checks and the error handling above.
    for module in (task_routes, queue_routes, action_routes, event_routes, nodes_routes,
                   schedule_routes):
        module.add_routes(app, service, cfg)
    return app
