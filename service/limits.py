"""The limits of what Taskdesk accepts and answers, in one place: the code checks them and the
OpenAPI document states them from these same constants."""

from __future__ import annotations

MAX_BODY_BYTES = 1024 * 1024  # a request body
MAX_ACTION_LENGTH = 100  # an action's name, in characters
MAX_DATA_BYTES = 1024 * 1024  # a task's data, as stored JSON
MAX_RESULT_BYTES = 1024 * 1024  # an action's result, as stored JSON
MAX_ERROR_CHARS = 4096  # an error text stored with a task
DEFAULT_LIMIT = 100  # tasks in a page of GET /tasks
MAX_LIMIT = 1000
MAX_OFFSET = 2**63 - 1  # the largest integer SQLite and PostgreSQL (bigint) both store
MAX_LOG_READ = 1024 * 1024  # one answer of GET /tasks/{id}/log; X-Next-Offset says where on
