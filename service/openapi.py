"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from storage import STATUSES

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


# Responses any route can give, from the checks made before routing.
_COMMON_ERRORS = {
    "401": _error("A token is configured and the request lacks `Authorization: Bearer <token>`"),
    "403": _error("The Host header is not a loopback name (DNS rebinding protection)"),
}
_POST_ERRORS = {
    "413": _error("The body is larger than 1 MiB"),
    "415": _error("Content-Type is not application/json"),
}

_TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The task's id (a UUID).",
}

_NO_BODY = {
    "required": False,
    "description": "No body, or an empty JSON object.",
    "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
}

_NULLABLE_TIME = {"type": ["number", "null"], "description": "Unix time in seconds"}


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Taskdesk",
            "version": version,
            "description": "A durable task queue: every accepted task is stored in SQLite "
            "before the API answers, and workers run queued tasks oldest first.",
        },
        "paths": {
            "/tasks": {
                "post": {
                    "operationId": "submitTask",
                    "summary": "Queue a task",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Submission"}}},
                    },
                    "responses": {
                        "202": _json({"$ref": "#/components/schemas/Accepted"},
                                     "Stored as queued"),
                        "400": _error("Invalid JSON, `action required`, or invalid data"),
                        **_POST_ERRORS,
                        **_COMMON_ERRORS,
                    },
                },
                "get": {
                    "operationId": "listTasks",
                    "summary": "List tasks, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": list(STATUSES)}},
                        {"name": "action", "in": "query", "required": False,
                         "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                    "default": 100}},
                        {"name": "offset", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 0,
                                    "maximum": 2**63 - 1, "default": 0}},
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/TaskList"}, "A page"),
                        "400": _error("Unknown status, or a bad limit or offset"),
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
            },
            "/tasks/{task_id}/retry": {
                "post": {
                    "operationId": "retryTask",
                    "summary": "Queue a failed or cancelled task again, with fresh attempts",
                    "parameters": [_TASK_ID],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "202": _json({"$ref": "#/components/schemas/Task"}, "Queued again"),
                        "400": _error("A body that is not empty"),
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
                    "summary": "Cancel a queued task",
                    "parameters": [_TASK_ID],
                    "requestBody": _NO_BODY,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Task"}, "Cancelled"),
                        "400": _error("A body that is not empty"),
                        "404": _error("No such task"),
                        "409": _error("The task is not queued"),
                        **_POST_ERRORS,
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
                "Submission": {
                    "type": "object",
                    "required": ["action"],
                    "additionalProperties": False,
                    "properties": {
                        "action": {
                            "type": "string", "minLength": 1, "maxLength": 100,
                            "description": "`uppercase` (data.text), `sum` (data.numbers), "
                            "or any other name (result `{\"output\": \"processed\"}`).",
                        },
                        "data": {"type": ["object", "null"],
                                 "description": "Input for the action; defaults to {}."},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"const": "queued"},
                    },
                },
                "Task": {
                    "type": "object",
                    "required": ["id", "action", "data", "status", "result", "error",
                                 "attempts", "max_attempts", "created_at", "started_at",
                                 "processed_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "action": {"type": "string"},
                        "data": {"description": "The submitted data (a JSON value)"},
                        "status": {"type": "string", "enum": list(STATUSES)},
                        "result": {"description": "The action's result, null until completed"},
                        "error": {"type": ["string", "null"],
                                  "description": "The last failed attempt's error"},
                        "attempts": {"type": "integer", "minimum": 0},
                        "max_attempts": {"type": "integer", "minimum": 1},
                        "created_at": {"type": "number", "description": "Unix time in seconds"},
                        "started_at": _NULLABLE_TIME,
                        "processed_at": _NULLABLE_TIME,
                    },
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
                "Workers": {
                    "type": "object",
                    "required": ["busy", "total"],
                    "properties": {"busy": {"type": "integer", "minimum": 0},
                                   "total": {"type": "integer", "minimum": 0}},
                },
                "Stats": {
                    "type": "object",
                    "required": ["counts", "queue_depth", "workers", "throughput"],
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
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "problems", "version", "workers"],
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
                    },
                },
            },
        },
    }
