"""Tasks as CSV or JSON files, for the API's ``GET /tasks?format=`` and the window's Export:
one serialisation, written a page at a time so that an export of a million tasks never holds
more than a page.

- JSON: ``{"tasks": [...], "count": N}``, each task as ``GET /tasks/{id}`` gives it (the
  listing's shape; ``count`` is how many were written, so it comes last).
- CSV (RFC 4180, UTF-8, CRLF line ends): a header row, then one row per task. Times are ISO
  8601 in UTC, as spreadsheets read them; ``duration`` in seconds; ``data``, ``result`` and
  ``after`` as JSON text. A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return gets a leading ``'``: a spreadsheet would otherwise run it as a formula,
  and task texts come from whoever may submit (OWASP's advice for CSV files).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from storage import Task
from storage.models import json_list

FORMATS = ("csv", "json")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}

CSV_COLUMNS = (
    "id", "action", "status", "priority", "attempts", "max_attempts", "created_at",
    "started_at", "processed_at", "duration", "run_after", "after", "data", "result",
    "error", "progress", "progress_message", "cancel_requested",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def format_of(path: str | Path) -> str | None:
    """The format a file name asks for by its extension (any case), or None."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else None


def chunks(pages: Iterable[Iterable[Task]], fmt: str) -> Iterator[str]:
    """The export of the tasks of *pages* in *fmt*, as text pieces (about a page each)."""
    if fmt == "csv":
        return _csv_chunks(pages)
    if fmt == "json":
        return _json_chunks(pages)
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


def _json_chunks(pages: Iterable[Iterable[Task]]) -> Iterator[str]:
    yield '{"tasks":['
    count = 0
    for page in pages:
        texts = [task.to_json() for task in page]
        if texts:
            yield ("," if count else "") + ",".join(texts)
            count += len(texts)
    yield f'],"count":{count}}}\n'


def _csv_chunks(pages: Iterable[Iterable[Task]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: CRLF, quotes doubled
    writer.writerow(CSV_COLUMNS)
    yield _taken(buffer)
    for page in pages:
        writer.writerows(csv_row(task) for task in page)
        yield _taken(buffer)


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def csv_row(task: Task) -> list[str]:
    duration = task.duration
    return [
        task.id, _text(task.action), task.status.value, str(task.priority),
        str(task.attempts), str(task.max_attempts), iso_time(task.created_at),
        iso_time(task.started_at), iso_time(task.processed_at),
        "" if duration is None else repr(round(duration, 6)), iso_time(task.run_after),
        json_list(task.after), task.data_json, task.result_json or "", _text(task.error),
        "" if task.progress is None else repr(task.progress), _text(task.progress_message),
        "true" if task.cancel_requested else "false",
    ]


def iso_time(when: float | None) -> str:
    """A Unix time as ISO 8601 in UTC, to the microsecond ("" for none)."""
    if when is None:
        return ""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")


def _text(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
