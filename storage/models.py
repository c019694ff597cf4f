"""The task record as the rest of the program sees it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES: tuple[str, ...] = tuple(s.value for s in TaskStatus)

# The columns every read selects, in the order Task.from_row expects.
TASK_COLUMNS = (
    "seq, id, action, data, status, result, error, attempts, max_attempts, "
    "created_at, started_at, processed_at, run_after"
)


@dataclass(frozen=True)
class Task:
    seq: int  # insertion order; a stable cursor for paging (not part of the API)
    id: str
    action: str
    data_json: str
    status: str
    result_json: str | None
    error: str | None
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    processed_at: float | None
    run_after: float

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Task:
        (seq, id_, action, data, status, result, error, attempts, max_attempts,
         created_at, started_at, processed_at, run_after) = row
        return cls(
            seq=seq,
            id=id_,
            action=action,
            data_json=data,
            status=status,
            result_json=result,
            error=error,
            attempts=attempts,
            max_attempts=max_attempts,
            created_at=created_at,
            started_at=started_at,
            processed_at=processed_at,
            run_after=run_after or 0.0,
        )

    # Decoded on first use and kept: a table showing thousands of rows never needs most of
    # them. (Not functools.cached_property: on Python 3.11 it takes a lock shared by every
    # instance, which API threads listing tasks contend for.)
    @property
    def data(self) -> Any:
        return self._decoded("data", self.data_json)

    @property
    def result(self) -> Any:
        return self._decoded("result", self.result_json)

    def _decoded(self, name: str, text: str | None) -> Any:
        cache = self.__dict__.setdefault("_decoded_cache", {})
        if name not in cache:
            cache[name] = _loads(text)
        return cache[name]

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.processed_at is None:
            return None
        return max(0.0, self.processed_at - self.started_at)

    def to_json(self) -> str:
        """to_dict() as JSON text, with data and result spliced in as stored (always valid
        JSON: written by Taskdesk, or made so by migration 2), so a listing of many tasks
        does not decode and re-encode them."""
        fields = [
            ("id", _json(self.id)),
            ("action", _json(self.action)),
            ("data", self.data_json),
            ("status", _json(self.status)),
            ("result", "null" if self.result_json is None else self.result_json),
            ("error", _json(self.error)),
            ("attempts", _json(self.attempts)),
            ("max_attempts", _json(self.max_attempts)),
            ("created_at", _json(self.created_at)),
            ("started_at", _json(self.started_at)),
            ("processed_at", _json(self.processed_at)),
        ]
        return "{" + ",".join(f'"{name}":{value}' for name, value in fields) + "}"

    def to_dict(self) -> dict[str, Any]:
        """The task as the API contract describes it (run_after is internal)."""
        return {
            "id": self.id,
            "action": self.action,
            "data": self.data,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "processed_at": self.processed_at,
        }


def _json(value: str | int | float | None) -> str:
    """One scalar as JSON, as SQLite's json_quote() writes it (see TASK_JSON_SQL), without
    json.dumps' per-call set-up (a task has nine)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring(value)  # the same escapes as json_quote
    if isinstance(value, int):
        return int.__repr__(value)
    return _float_json(value)


def _float_json(value: float) -> str:
    """A time as SQLite writes a REAL in JSON: 15 significant digits (10 µs for times of
    this century), always with a fraction or an exponent. Times are always finite."""
    text = format(value, ".15g")
    if "e" in text:
        mantissa, exponent = text.split("e")
        return (mantissa if "." in mantissa else mantissa + ".0") + "e" + exponent
    return text if "." in text else text + ".0"


# A task row as the JSON text Task.to_json() writes, character for character, computed by
# SQLite: a listing of 100 tasks then costs a quarter of what building them in Python does.
TASK_JSON_SQL = (
    "'{\"id\":' || json_quote(id) || ',\"action\":' || json_quote(action)"
    " || ',\"data\":' || data || ',\"status\":' || json_quote(status)"
    " || ',\"result\":' || coalesce(result, 'null') || ',\"error\":' || json_quote(error)"
    " || ',\"attempts\":' || attempts || ',\"max_attempts\":' || max_attempts"
    " || ',\"created_at\":' || json_quote(created_at)"
    " || ',\"started_at\":' || json_quote(started_at)"
    " || ',\"processed_at\":' || json_quote(processed_at) || '}'"
)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # Rows written by other programs (e.g. the tutorial) may hold plain text.
        return text
