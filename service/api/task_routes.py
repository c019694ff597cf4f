"""The routes of tasks: submit, list, get, retry, cancel, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import bottle

from service.api.export_routes import export_tasks
from service.api.http_io import (
    bool_param,
    decode_json,
    int_param,
    json_answer,
    json_error,
    json_text_response,
    parse_optional_empty_body,
    query_text,
    read_body,
)
from service.errors import (
    ConflictError,
    InvalidTransitionError,
    TaskNotFoundError,
    ValidationError,
)
from service.limits import DEFAULT_LIMIT, MAX_LIMIT, MAX_LOG_READ, MAX_OFFSET
from service.task_service import TaskService
from storage import TaskStatus

if TYPE_CHECKING:
    from service.api.app import ApiConfig

SUBMISSION_FIELDS = frozenset({"action", "data", "priority", "delay", "run_at", "after"})


def add_routes(app: bottle.Bottle, service: TaskService, cfg: ApiConfig) -> None:
    @app.post("/tasks")
    def submit_task() -> str:
        body = decode_json(read_body())
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
        return json_answer(202 if added.created else 200, {"id": task.id, "status": task.status})

    @app.get("/tasks")
    def list_tasks() -> NoReturn:
        # Checked even for an export, which ignores them: a bad value is a 400 either way.
        limit = int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = int_param("offset", 0, 0, MAX_OFFSET)
        fmt = query_text("format")
        if fmt is not None:
            export_tasks(service, fmt)
        status = query_text("status")
        action = query_text("action")
        scheduled = bool_param("scheduled")
        sort = query_text("sort")
        order = query_text("order")
        try:
            listed, count, total = service.list_json(status, action, limit, offset,
                                                     scheduled=scheduled, sort=sort, order=order)
        except ValidationError as exc:  # an unknown status, sort or order
            json_error(400, str(exc))
        json_text_response(200, f'{{"tasks":[{listed}],"count":{count},"total":{total}}}')

    @app.get("/tasks/<task_id>")
    def get_task(task_id: str) -> NoReturn:
        try:
            json_text_response(200, service.get(task_id).to_json())
        except TaskNotFoundError as exc:
            json_error(404, str(exc))

    @app.delete("/tasks/<task_id>")
    def delete_task(task_id: str) -> NoReturn:
        # The task as it was, so a client that deletes still has what it deleted.
        try:
            json_text_response(200, service.delete(task_id).to_json())
        except TaskNotFoundError as exc:
            json_error(404, str(exc))
        except InvalidTransitionError as exc:  # queued or running
            json_error(409, str(exc))

    def change(task_id: str, apply: Callable[[str], Any], ok_status: int) -> NoReturn:
        parse_optional_empty_body()
        try:
            task = apply(task_id)
        except TaskNotFoundError as exc:
            json_error(404, str(exc))
        except InvalidTransitionError as exc:
            json_error(409, str(exc))
        json_text_response(ok_status, task.to_json())

    @app.get("/tasks/<task_id>/log")
    def task_log(task_id: str) -> NoReturn:
        offset = int_param("offset", 0, 0, MAX_OFFSET)
        try:
            piece = service.read_log(task_id, offset, MAX_LOG_READ)
            finished = service.get(task_id).status.is_finished
        except TaskNotFoundError as exc:
            json_error(404, str(exc))
        data = piece.data
        if not finished:
            # More may follow: keep a multi-byte character cut in two for the next read.
            data = data[:utf8_boundary(data)]
        raise bottle.HTTPResponse(
            body=data.decode("utf-8", "replace"), status=200,
            headers={"Content-Type": "text/plain; charset=utf-8",
                     "X-Next-Offset": str(piece.start + len(data)),
                     "Cache-Control": "no-store"})

    @app.post("/tasks/<task_id>/retry")
    def retry_task(task_id: str) -> NoReturn:
        change(task_id, service.retry, 202)

    @app.post("/tasks/<task_id>/cancel")
    def cancel_task(task_id: str) -> NoReturn:
        parse_optional_empty_body()
        try:
            task = service.cancel(task_id)
        except TaskNotFoundError as exc:
            json_error(404, str(exc))
        except InvalidTransitionError as exc:
            json_error(409, str(exc))
        # A running task was asked to stop: accepted, it ends cancelled when its attempt ends.
        json_text_response(202 if task.status == TaskStatus.RUNNING else 200, task.to_json())



def utf8_boundary(data: bytes) -> int:
    """How much of *data* ends on a whole UTF-8 character: an incomplete sequence at its end
    (at most 3 bytes of a 4-byte character) is left for the next read."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII: whole
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)  # only continuation bytes: not UTF-8 anyway; replaced when decoded
