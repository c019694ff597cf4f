"""What the PostgreSQL store's statements share: the columns a task is read from, the JSON
PostgreSQL writes for a listing, and the WHERE clause of a TaskQuery."""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from storage.models import Task, TaskQuery, TaskSort, TaskStatus, sort_value


def task_columns(alias: str = "") -> str:
    """The columns every read selects, in Task's field order (strings as JSON literals)."""
    names = ("seq", "id", "action_json", "data", "status", "result", "error_json", "attempts",
             "max_attempts", "created_at", "started_at", "processed_at", "run_after",
             "priority", "after_ids", "waiting", "progress", "progress_message_json",
             "cancel_requested")
    return ", ".join(alias + n for n in names)


TASK_COLUMNS = task_columns()

_loads = json.loads


def task_from_row(row: Sequence[Any]) -> Task:
    (seq, id_, action, data, status, result, error, attempts, max_attempts, created_at,
     started_at, processed_at, run_after, priority, after, waiting, progress, message,
     cancel_requested) = row
    return Task.from_row((
        seq, id_, _loads(action), data, status, result,
        None if error is None else _loads(error), attempts, max_attempts, created_at,
        started_at, processed_at, run_after, priority, after, waiting, progress,
        None if message is None else _loads(message), cancel_requested,
    ))


def tasks_from_rows(rows: Sequence[Sequence[Any]]) -> list[Task]:
    return [task_from_row(r) for r in rows]


def quoted(text: str | None) -> str | None:
    """A string as the JSON literal the *_json columns hold (the escapes of Task.to_json)."""
    return None if text is None else str(encode_basestring(text))


def possible_ids(task_ids: Sequence[str]) -> list[str]:
    """*task_ids* without those no task can have: with a NUL, which PostgreSQL text cannot
    hold (asking for one would be an error, not "no such task")."""
    return [t for t in task_ids if "\x00" not in t]


def searchable(text: str) -> str:
    """The `action` column's copy: PostgreSQL text cannot hold NUL."""
    return text.replace("\x00", "\ufffd")


# A task row as the JSON text Task.to_json() writes, character for character, written by
# PostgreSQL (ids are uuids and statuses plain words: no escaping needed).
TASK_JSON_SQL = (
    "'{\"id\":\"' || id || '\",\"action\":' || action_json || ',\"data\":' || data"
    " || ',\"status\":\"' || status || '\",\"result\":' || coalesce(result, 'null')"
    " || ',\"error\":' || coalesce(error_json, 'null')"
    " || ',\"attempts\":' || attempts || ',\"max_attempts\":' || max_attempts"
    " || ',\"created_at\":' || taskdesk_number(created_at)"
    " || ',\"started_at\":' || taskdesk_number(started_at)"
    " || ',\"processed_at\":' || taskdesk_number(processed_at)"
    " || ',\"run_after\":' || taskdesk_number(run_after)"
    " || ',\"priority\":' || priority || ',\"after\":' || coalesce(after_ids, '[]')"
    " || ',\"progress\":' || taskdesk_number(progress)"
    " || ',\"progress_message\":' || coalesce(progress_message_json, 'null')"
    " || ',\"cancel_requested\":' || CASE WHEN cancel_requested THEN 'true' ELSE 'false' END"
    " || '}'"
)

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ASCII_LOWER = str.maketrans(_UPPER, _LOWER)


def filters(query: TaskQuery, after: Task | None = None) -> tuple[str, list[object]]:
    """``WHERE …`` for *query* (or ""), and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    if query.status is not None:
        clauses.append("status = %s")
        params.append(TaskStatus(query.status).value)
    if query.action is not None:
        # tasks_by_action holds the searchable copy in code point order (which also serves
        # the order by action); the JSON literal tells apart names that differ by a NUL.
        clauses.append('action COLLATE "C" = %s AND action_json = %s')
        params.extend([searchable(query.action), quoted(query.action)])
    if query.search:
        # As SQLite's LIKE: case-insensitive for ASCII letters only (ILIKE would fold É
        # too), and _ and % literal.
        text = searchable(query.search).translate(_ASCII_LOWER)
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"(id LIKE %s OR translate(action, '{_UPPER}', '{_LOWER}') LIKE %s)")
        params.extend([pattern + "%", "%" + pattern + "%"])
    if query.ids is not None:
        clauses.append("id = ANY(%s::text[])")
        params.append(possible_ids(query.ids))
    if query.scheduled_after is not None:
        clauses.append("status = 'queued' AND run_after > %s")
        params.append(query.scheduled_after)
    if after is not None:
        # The cursor's values as given, not re-read: paging goes on from where the last page
        # ended even when that task changed or was deleted since. PostgreSQL seeks an index
        # by a whole row comparison.
        op = "<" if query.descending else ">"
        expression = SORT_SQL[query.sort]
        if expression == "seq":
            clauses.append(f"seq {op} %s")
            params.append(after.seq)
        else:
            value = sort_value(query.sort, after)
            if query.sort == TaskSort.ACTION:
                value = searchable(after.action)
            clauses.append(f"({expression}, seq) {op} (%s, %s)")
            params.extend([value, after.seq])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# What each order compares before seq, written exactly as the index that serves it (an
# index on an expression serves only that expression): the primary key, tasks_by_status,
# tasks_by_priority, and those of migration 5. Each ends in seq, so walking it gives the
# tie-breaker's order too, and nothing is sorted. -1 stands for a time not there yet
# (TaskSort); action compares in code point order ("C"), as SQLite and Python do.
SORT_SQL: dict[TaskSort, str] = {
    TaskSort.CREATED: "seq",
    TaskSort.STARTED: "coalesce(started_at, -1)",
    TaskSort.FINISHED: "coalesce(processed_at, -1)",
    TaskSort.DURATION: "coalesce(processed_at - started_at, -1)",
    TaskSort.ATTEMPTS: "attempts",
    TaskSort.ACTION: 'action COLLATE "C"',
    TaskSort.STATUS: "status",
    TaskSort.PRIORITY: "priority",
}


def order_by(query: TaskQuery, expression: str | None = None) -> str:
    """ORDER BY's list for *query*; *expression*: a name for the sort value instead."""
    direction = " DESC" if query.descending else ""
    if SORT_SQL[query.sort] == "seq":
        return f"seq{direction}"
    return f"{expression or SORT_SQL[query.sort]}{direction}, seq{direction}"
