"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

Generated, not written by hand where it can be: each action's data schema comes from the
action registry, the limits from service/limits.py and the statuses from storage, so the
document says what the code checks (tests/test_fuzz.py holds the API to it).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from jsonschema import Draft202012Validator

from service.actions import ActionRegistry, default_registry
from service.export import FORMATS
from service.limits import (
    DEFAULT_LIMIT,
    MAX_ACTION_LENGTH,
    MAX_BODY_BYTES,
    MAX_LIMIT,
    MAX_LOG_READ,
    MAX_OFFSET,
)
from service.scheduling import (
    MAX_AFTER,
    MAX_AHEAD_SECONDS,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRIORITY,
    MAX_TASK_ID_LENGTH,
    MIN_PRIORITY,
)
from storage import ORDERS, SORTS, STATUSES

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


def _links(*operation_ids: str) -> dict[str, Any]:
    """OpenAPI links from a response carrying a task's id to the operations that take it, so
    that clients and stateful testers know where the id goes."""
    return {"links": {
        operation_id[0].upper() + operation_id[1:]: {
            "operationId": operation_id, "parameters": {"task_id": "$response.body#/id"}}
        for operation_id in operation_ids
    }}


# Responses any route can give, from the checks made before routing.
_COMMON_ERRORS = {
    "401": _error("A token is configured and the request lacks `Authorization: Bearer <token>`"),
    "403": _error("The Host header is not a loopback name (DNS rebinding protection)"),
}
_POST_ERRORS = {
    "413": _error(f"The body is larger than {MAX_BODY_BYTES:,} bytes"),
    "415": _error("Content-Type is not application/json"),
}

def _name_links(*operation_ids: str) -> dict[str, Any]:
    """Links from a listing of schedules to the operations that take a schedule's name."""
    return {"links": {
        operation_id[0].upper() + operation_id[1:]: {
            "operationId": operation_id,
            "parameters": {"name": "$response.body#/schedules/0/name"}}
        for operation_id in operation_ids
    }}


_SCHEDULE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The schedule's name, as in `[schedules.<name>]` of the actions file.",
}

_TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The task's id (a UUID).",
}

_NO_BODY = {
    # Required in the document because Content-Type: application/json is (415 otherwise, as on
    # every POST, so that a web page cannot send it); the API also takes no body at all.
    "required": True,
    "description": "An empty JSON object, or no body; either way with Content-Type: "
    "application/json.",
    "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
}

_NULLABLE_TIME = {"type": ["number", "null"], "description": "Unix time in seconds"}


@functools.cache
def unprintable_class() -> str:
    """A regex character class that matches every code point ``str.isprintable()`` refuses
    (controls, format characters, separators other than the space, surrogates, private use,
    unassigned): the characters TaskService refuses in an action name.

    JSON Schema has no portable way to name Unicode categories, so the class lists the
    printable code points as ranges and negates them (``[^…]``: about 700 ranges, a list a
    generator expands far faster than the million code points refused), from this Python's
    Unicode database: the document is exact for the server that serves it, so a client (or a
    fuzzer) that follows it is never refused for a character. Basic-plane code points are
    written as \\uXXXX escapes, the others as themselves; both ECMA-262 (with the u flag that
    JSON Schema implies) and Python read the class the same.
    """
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for code in range(sys.maxunicode + 2):
        printable = code <= sys.maxunicode and chr(code).isprintable()
        if printable and start is None:
            start = code
        elif not printable and start is not None:
            ranges.append((start, code - 1))
            start = None

    def char(code: int) -> str:
        return f"\\u{code:04X}" if code <= 0xFFFF else chr(code)

    return "[^" + "".join(
        char(first) if first == last else f"{char(first)}-{char(last)}" for first, last in ranges
    ) + "]"


def _data_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An action's data as the API takes it: its schema, or null (meaning {}) when {} is
    valid data for it."""
    if not Draft202012Validator(schema).is_valid({}):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _submission_schema(registry: ActionRegistry) -> dict[str, Any]:
    """POST /tasks: exactly what TaskService.validate and the actions' schemas accept, except
    what JSON Schema cannot say (a `sum` whose total overflows, data over 1 MiB of JSON,
    nesting deeper than the API's limit, tasks in `after` that do not exist), which is a 400
    all the same."""

    def data_for(action: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "if": {"properties": {"action": {"const": action}}, "required": ["action"]},
            "then": {"properties": {"data": _data_schema(schema)}},
        }

    names = registry.names()
    action: dict[str, Any] = {
        "type": "string", "minLength": 1, "maxLength": MAX_ACTION_LENGTH,
        # Printable characters only, and not only spaces.
        "not": {"anyOf": [{"pattern": unprintable_class()}, {"pattern": "^ *$"}]},
        "description": "One of the registered actions (`GET /actions`): "
        + ", ".join(f"`{n}`" for n in names)
        + ("; any other name runs the default action (result `{\"output\": "
           "\"processed\"}`)" if registry.unknown == "accept" else "")
        + ". Printable characters only (Python's `str.isprintable`), and not only spaces.",
    }
    if registry.unknown == "refuse":
        action = {"type": "string", "enum": names, "description": action["description"]}
    return {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "allOf": [data_for(a.name, a.schema) for a in registry.actions()],
        "properties": {
            "action": action,
            "data": {"type": ["object", "null"],
                     "description": "Input for the action; defaults to {}."},
            "priority": {"type": ["integer", "null"], "minimum": MIN_PRIORITY,
                         "maximum": MAX_PRIORITY, "default": 0,
                         "description": "Higher runs first; equal priorities oldest first."},
            "delay": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_AHEAD_SECONDS,
                      "description": "Seconds to wait before it may run (not with run_at)."},
            "run_at": {"type": ["number", "null"],
                       "description": "Unix seconds before which it does not run (not with "
                       "delay); at most a minute in the past, at most a year ahead."},
            "after": {"type": ["array", "null"], "maxItems": MAX_AFTER,
                      "items": {"type": "string", "minLength": 1,
                                "maxLength": MAX_TASK_ID_LENGTH},
                      "description": "Ids of tasks that must all complete first; if one "
                      "fails or is cancelled, this task is cancelled."},
        },
        # delay and run_at are exclusive.
        "not": {"required": ["delay", "run_at"],
                "properties": {"delay": {"type": "number"}, "run_at": {"type": "number"}}},
    }


def _events_path() -> dict[str, Any]:
    """GET /events (service/api/event_routes.py): a stream, so its 200 is text/event-stream,
    described in words (OpenAPI 3.1 has no schema for the events of a stream)."""
    return {"get": {
        "operationId": "streamEvents",
        "summary": "Follow every change of a task as Server-Sent Events",
        "description": "One event per change, in order: `id:` a sequence that only grows, "
        "`event: task` (`deleted` for a deleted task, `queue` with `{\"paused\": bool}` "
        "for pause and resume, sent whatever the filters), `data:` the task as "
        "`GET /tasks/{task_id}` gives it. With `Last-Event-ID` the stream starts after that "
        "event, none missed, while the server still holds it (the last 4,096 changes, fewer "
        "for large tasks); otherwise it starts with `event: resync` (`id:` the newest, "
        "`data: {\"last_id\": n}`): re-read the tasks, then carry on. A `: keep-alive` "
        "comment after 15 s of silence (with an `id:` when filters skipped events). At most "
        "8 streams at once; a client that stops reading for 10 s is disconnected.",
        "parameters": [
            {"name": "status", "in": "query", "required": False, "allowEmptyValue": True,
             "schema": {"type": "string", "enum": list(STATUSES)},
             "description": "Only tasks with this status after the change."},
            {"name": "action", "in": "query", "required": False, "allowEmptyValue": True,
             "schema": {"type": "string"}, "description": "Only tasks of this action."},
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
             "description": "The id of the last event received: resume after it."},
        ],
        "responses": {
            "200": {
                "description": "The stream, open until the client or Taskdesk stops it",
                "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "id: 1718000000123457\nevent: task\ndata: {\"id\": \"…\", "
                               "\"status\": \"completed\", …}\n\n",
                }},
            },
            "400": _error("Unknown status, a malformed Last-Event-ID, or a parameter given "
                          "more than once"),
            "503": {**_error("As many streams are open as allowed (8); try again after "
                             "Retry-After seconds"),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
            **_COMMON_ERRORS,
        },
    }}


def openapi_document(version: str, registry: ActionRegistry | None = None) -> dict[str, Any]:
    registry = registry if registry is not None else default_registry()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Taskdesk",
            "version": version,
            "description": "A durable task queue: every accepted task is stored in SQLite "
            "(or a PostgreSQL database shared by several instances) before the API answers, "
            "and workers run queued tasks by priority, then oldest first, each once it is due "
            "and what it waits for has completed.",
        },
        "paths": {
            "/tasks": {
                "post": {
                    "operationId": "submitTask",
                    "summary": "Queue a task",
                    "parameters": [{
                        "name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1,
                                   "maxLength": MAX_IDEMPOTENCY_KEY,
                                   "pattern": "^[ -~]+$"},
                        "description": "A second POST with the same key answers 200 with the "
                        "first task and stores nothing (for as long as that task is kept); "
                        "with another body, 409.",
                    }],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Submission"}}},
                    },
                    "responses": {
                        "202": {**_json({"$ref": "#/components/schemas/Accepted"},
                                        "Stored as queued"),
                                **_links("getTask", "cancelTask", "retryTask")},
                        "200": {**_json({"$ref": "#/components/schemas/Accepted"},
                                        "Its Idempotency-Key was used before for the same "
                                        "request: the first task's id and current status"),
                                **_links("getTask", "cancelTask", "retryTask")},
                        "409": _error("Its Idempotency-Key was used for another request"),
                        "400": _error(
                            "Invalid JSON (also: a name twice in an object, a lone surrogate, "
                            "nesting deeper than 100), `action required`, or invalid data "
                            "(also what the schema cannot say: a `sum` total too large, data "
                            "over 1 MiB as stored)"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
                "get": {
                    "operationId": "listTasks",
                    "summary": "List tasks, newest first",
                    # An empty value (`?status=`) is the same as none: allowEmptyValue.
                    "parameters": [
                        {"name": "status", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "string", "enum": list(STATUSES)}},
                        {"name": "action", "in": "query", "required": False,
                         "allowEmptyValue": True, "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                    "default": DEFAULT_LIMIT}},
                        {"name": "offset", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "integer", "minimum": 0,
                                    "maximum": MAX_OFFSET, "default": 0}},
                        {"name": "scheduled", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "string", "enum": ["true", "false"],
                                    "default": "false"},
                         "description": "true: only queued tasks not due yet (delayed, or "
                         "waiting to retry)."},
                        {"name": "sort", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "string", "enum": [*SORTS, "newest"],
                                    "default": "created"},
                         "description": "What the tasks are ordered by: created (the order "
                         "they were stored in), started, finished, duration, attempts, action "
                         "(by code point), status (by name) or priority; ties by creation, in "
                         "the same direction. A time not there yet (not started, not "
                         "finished) comes first ascending and last descending. newest is "
                         "created, for clients of earlier versions."},
                        {"name": "order", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "string", "enum": list(ORDERS),
                                    "default": "desc"},
                         "description": "asc or desc (newest, latest, longest, most, highest "
                         "first)."},
                        {"name": "format", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "string", "enum": list(FORMATS)},
                         "description": "Export every matching task, in the order asked, as "
                         "a file (Content-Disposition: attachment), streamed: csv (a header "
                         "row; times ISO 8601 UTC; data, result and after as JSON text) or "
                         "json ({\"tasks\": [...], \"count\": N}). limit and offset do "
                         "not apply (they are ignored). A body that ends without the end of "
                         "the chunked encoding was cut short by a failure."},
                    ],
                    "responses": {
                        "200": {
                            "description": "A page; with format, the export",
                            "content": {
                                "application/json": {"schema": {"anyOf": [
                                    {"$ref": "#/components/schemas/TaskList"},
                                    {"$ref": "#/components/schemas/TaskExport"}]}},
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        "400": _error("Unknown status, sort, order or format (the message "
                                      "names the valid values), scheduled neither true nor "
                                      "false, a bad limit or offset, "
                                      "or a parameter given more than once"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/tasks/{task_id}": {
                "get": {
                    "operationId": "getTask",
                    "summary": "One task",
                    "parameters": [_TASK_ID],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Task"}, "The task"),
                        "404": _error("No such task"),
                        **_COMMON_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "deleteTask",
                    "summary": "Delete a finished task, with its log and idempotency key",
                    "parameters": [_TASK_ID],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Task"},
                                     "Deleted; the task as it was"),
                        "404": _error("No such task"),
                        "409": _error("The task is queued or running"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/tasks/{task_id}/log": {
                "get": {
                    "operationId": "getTaskLog",
                    "summary": "A task's log (a command's output, a Python action's ctx.log)",
                    "parameters": [
                        _TASK_ID,
                        {"name": "offset", "in": "query", "required": False,
                         "allowEmptyValue": True,
                         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                                    "default": 0},
                         "description": "Byte offset in everything the task logged: pass "
                         "the previous answer's X-Next-Offset to follow the log."},
                    ],
                    "responses": {
                        "200": {
                            "description": f"At most {MAX_LOG_READ:,} bytes from the offset "
                            "(invalid UTF-8 replaced; empty when there is no log or nothing "
                            "new). The log keeps its last 10 MiB: an offset before that "
                            "starts at the oldest byte kept.",
                            "headers": {"X-Next-Offset": {
                                "description": "Where the next read starts",
                                "schema": {"type": "integer", "minimum": 0}}},
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "400": _error("A bad offset, or one given more than once"),
                        "404": _error("No such task"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/tasks/{task_id}/retry": {
                "post": {
                    "operationId": "retryTask",
                    "summary": "Queue a failed or cancelled task again, with fresh attempts",
                    "parameters": [_TASK_ID],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "202": {**_json({"$ref": "#/components/schemas/Task"}, "Queued again"),
                                **_links("getTask", "cancelTask")},
                        "400": _error("A body that is not empty, or not JSON"),
                        "404": _error("No such task"),
                        "409": _error("The task is not failed or cancelled"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/tasks/{task_id}/cancel": {
                "post": {
                    "operationId": "cancelTask",
                    "summary": "Cancel a queued task, or stop a running one",
                    "parameters": [_TASK_ID],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "200": {**_json({"$ref": "#/components/schemas/Task"}, "Cancelled"),
                                **_links("getTask", "retryTask", "deleteTask")},
                        "202": {**_json({"$ref": "#/components/schemas/Task"},
                                        "Running: asked to stop; it ends cancelled"),
                                **_links("getTask", "retryTask")},
                        "400": _error("A body that is not empty, or not JSON"),
                        "404": _error("No such task"),
                        "409": _error("The task is finished"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/queue/pause": {
                "post": {
                    "operationId": "pauseQueue",
                    "summary": "Pause the queue: running tasks finish, nothing new starts, "
                    "submissions are still accepted; kept across restarts",
                    "requestBody": _NO_BODY,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/QueueState"}, "Paused"),
                        "400": _error("A body that is not empty, or not JSON"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/queue/resume": {
                "post": {
                    "operationId": "resumeQueue",
                    "summary": "Resume the queue",
                    "requestBody": _NO_BODY,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/QueueState"}, "Running"),
                        "400": _error("A body that is not empty, or not JSON"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/schedules": {
                "get": {
                    "operationId": "listSchedules",
                    "summary": "The schedules of the actions file, each with its next due "
                    "time and its last task",
                    "responses": {
                        "200": {**_json({"$ref": "#/components/schemas/ScheduleList"},
                                        "Every schedule"),
                                **_name_links("runSchedule", "pauseSchedule",
                                              "resumeSchedule")},
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/schedules/{name}/run": {
                "post": {
                    "operationId": "runSchedule",
                    "summary": "Fire a schedule now (paused or not): queue its task",
                    "parameters": [_SCHEDULE_NAME],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "202": {**_json({"$ref": "#/components/schemas/Accepted"},
                                        "Its task, stored as queued"),
                                **_links("getTask", "cancelTask")},
                        "400": _error("A body that is not empty, or not JSON"),
                        "404": _error("No such schedule"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/schedules/{name}/pause": {
                "post": {
                    "operationId": "pauseSchedule",
                    "summary": "Pause a schedule (for every instance, across restarts)",
                    "parameters": [_SCHEDULE_NAME],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Schedule"}, "Paused"),
                        "400": _error("A body that is not empty, or not JSON"),
                        "404": _error("No such schedule"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/schedules/{name}/resume": {
                "post": {
                    "operationId": "resumeSchedule",
                    "summary": "Resume a schedule; a firing missed while paused runs once",
                    "parameters": [_SCHEDULE_NAME],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Schedule"}, "Resumed"),
                        "400": _error("A body that is not empty, or not JSON"),
                        "404": _error("No such schedule"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/actions": {
                "get": {
                    "operationId": "listActions",
                    "summary": "The actions tasks can name, with their data's JSON Schema",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/ActionList"},
                                     "The registry"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Counts per status, queue depth, workers and throughput",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Stats"}, "Statistics"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/health": {
                "get": {
                    "operationId": "getHealth",
                    "summary": "Liveness",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Health"}, "Running"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/events": _events_path(),
            "/nodes": {
                "get": {
                    "operationId": "listNodes",
                    "summary": "The Taskdesk instances sharing the database",
                    "description": "On PostgreSQL, every instance registered on the database, "
                    "oldest first, with its heartbeat and running tasks; on SQLite (one "
                    "instance per file), this instance alone.",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/NodeList"}, "The nodes"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object"}, "The OpenAPI document"),
                        **_COMMON_ERRORS,
                    },
                },
            },
        },
        # The token is optional: only an instance started with --token requires it.
        "security": [{}, {"bearerToken": []}],
        "components": {
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required on every request when Taskdesk runs with --token "
                    "(always the case when it listens beyond loopback).",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"},
                                   "detail": {"type": "string"}},
                },
                "Submission": _submission_schema(registry),
                "Accepted": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": list(STATUSES),
                                   "description": "queued for a new task; for a repeated "
                                   "Idempotency-Key, the first task's status now"},
                    },
                },
                "Task": {
                    "type": "object",
                    "required": ["id", "action", "data", "status", "result", "error",
                                 "attempts", "max_attempts", "created_at", "started_at",
                                 "processed_at", "run_after", "priority", "after", "progress",
                                 "progress_message", "cancel_requested"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "action": {"type": "string"},
                        "data": {"type": "object",
                                 "description": "The submitted data ({} when none was given)"},
                        "status": {"type": "string", "enum": list(STATUSES)},
                        "result": {"description": "The action's result, null until completed"},
                        "error": {"type": ["string", "null"],
                                  "description": "The last failed attempt's error"},
                        "attempts": {"type": "integer", "minimum": 0},
                        "max_attempts": {"type": "integer", "minimum": 1},
                        "created_at": {"type": "number", "description": "Unix time in seconds"},
                        "started_at": _NULLABLE_TIME,
                        "processed_at": _NULLABLE_TIME,
                        "run_after": {"type": "number",
                                      "description": "Unix seconds: not run before then"},
                        "priority": {"type": "integer", "minimum": MIN_PRIORITY,
                                     "maximum": MAX_PRIORITY},
                        "after": {"type": "array", "items": {"type": "string"},
                                  "description": "Tasks that must complete first"},
                        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                     "description": "How far the running attempt has come"},
                        "progress_message": {"type": ["string", "null"]},
                        "cancel_requested": {"type": "boolean",
                                             "description": "Running, and asked to stop"},
                    },
                },
                "ActionList": {
                    "type": "object",
                    "required": ["actions"],
                    "properties": {"actions": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name", "description", "kind", "schema"],
                        "properties": {
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "kind": {"type": "string",
                                     "enum": ["builtin", "python", "command"]},
                            "schema": {"type": "object",
                                       "description": "JSON Schema (2020-12) of its data"},
                        },
                    }}},
                },
                "TaskList": {
                    "type": "object",
                    "required": ["tasks", "count", "total"],
                    "properties": {
                        "tasks": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/Task"}},
                        "count": {"type": "integer", "minimum": 0,
                                  "description": "Tasks in this page"},
                        "total": {"type": "integer", "minimum": 0,
                                  "description": "Tasks matching the filters"},
                    },
                },
                "TaskExport": {
                    "type": "object",
                    "required": ["tasks", "count"],
                    "properties": {
                        "tasks": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/Task"}},
                        "count": {"type": "integer", "minimum": 0,
                                  "description": "Tasks exported"},
                    },
                },
                "Workers": {
                    "type": "object",
                    "required": ["busy", "total"],
                    "properties": {"busy": {"type": "integer", "minimum": 0},
                                   "total": {"type": "integer", "minimum": 0}},
                },
                "QueueState": {
                    "type": "object",
                    "required": ["paused"],
                    "properties": {"paused": {"type": "boolean"}},
                },
                "Schedule": {
                    "type": "object",
                    "required": ["name", "action", "data", "cron", "every", "paused",
                                 "next_due", "last_due", "last_task"],
                    "properties": {
                        "name": {"type": "string"},
                        "action": {"type": "string"},
                        "data": {"type": "object"},
                        "cron": {"type": ["string", "null"],
                                 "description": "A cron expression in local time, or null"},
                        "every": {"type": ["number", "null"], "minimum": 1,
                                  "description": "Seconds between firings, or null"},
                        "paused": {"type": "boolean"},
                        "next_due": {**_NULLABLE_TIME,
                                     "description": "Unix seconds; null while paused"},
                        "last_due": {**_NULLABLE_TIME,
                                     "description": "Unix seconds of the last firing"},
                        "last_task": {
                            "oneOf": [
                                {"type": "null"},
                                {"type": "object", "required": ["id", "status"],
                                 "properties": {
                                     "id": {"type": "string", "format": "uuid"},
                                     "status": {"type": ["string", "null"],
                                                "enum": [*STATUSES, None],
                                                "description": "null: no longer kept"}}},
                            ],
                            "description": "The task of the last firing"},
                    },
                },
                "ScheduleList": {
                    "type": "object",
                    "required": ["schedules"],
                    "properties": {"schedules": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}},
                },
                "Stats": {
                    "type": "object",
                    "required": ["counts", "queue_depth", "workers", "throughput", "paused"],
                    "properties": {
                        "counts": {
                            "type": "object",
                            "required": list(STATUSES),
                            "properties": {s: {"type": "integer", "minimum": 0}
                                           for s in STATUSES},
                        },
                        "queue_depth": {"type": "integer", "minimum": 0},
                        "workers": {"$ref": "#/components/schemas/Workers"},
                        "throughput": {
                            "type": "object",
                            "required": ["completed_per_second", "failed_per_second",
                                         "window_seconds"],
                            "properties": {
                                "completed_per_second": {"type": "number", "minimum": 0},
                                "failed_per_second": {"type": "number", "minimum": 0},
                                "window_seconds": {"type": "integer", "minimum": 1},
                            },
                        },
                        "paused": {"type": "boolean",
                                   "description": "The queue is paused (POST /queue/pause)"},
                    },
                },
                "Node": {
                    "type": "object",
                    "required": ["id", "host", "pid", "api_url", "started_at", "heartbeat_at",
                                 "alive", "current", "running"],
                    "properties": {
                        "id": {"type": "string"},
                        "host": {"type": "string"},
                        "pid": {"type": "integer"},
                        "api_url": {"type": ["string", "null"]},
                        "started_at": {"type": "number", "description": "Unix seconds, "
                                       "database clock"},
                        "heartbeat_at": {"type": "number", "description": "Unix seconds, "
                                         "database clock"},
                        "alive": {"type": "boolean",
                                  "description": "Its last heartbeat is within its lease"},
                        "current": {"type": "boolean", "description": "The instance answering"},
                        "running": {"type": "array", "items": {"type": "string"},
                                    "description": "Ids of the tasks it runs now"},
                    },
                },
                "NodeList": {
                    "type": "object",
                    "required": ["nodes", "alive", "shared"],
                    "properties": {
                        "nodes": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/Node"}},
                        "alive": {"type": "integer", "minimum": 0},
                        "shared": {"type": "boolean",
                                   "description": "Several instances may use the database "
                                   "(PostgreSQL)"},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "problems", "version", "workers", "node",
                                 "database"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded"]},
                        "problems": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "What is wrong right now (empty when ok): a worker "
                            "that crashed and was replaced, a database that cannot be written.",
                        },
                        "version": {"type": "string"},
                        "workers": {"$ref": "#/components/schemas/Workers"},
                        "node": {"type": "string",
                                 "description": "This instance, e.g. `node 7 (host, pid "
                                 "4242)` on PostgreSQL"},
                        "database": {"type": "string",
                                     "description": "The database (a URL without password)"},
                    },
                },
            },
        },
    }
