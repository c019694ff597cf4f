"""How task values read on screen: ids, local times, durations, attempts, previews, counts.

Pure functions with no widgets, so the table, the details panel and the tests share one
wording. Times are Unix seconds from the store, shown in the user's local time zone.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from typing import Any

from storage import Task, TaskStatus

SHORT_ID_LENGTH = 8
PREVIEW_CHARS = 300


def short_id(task_id: str) -> str:
    return task_id[:SHORT_ID_LENGTH]


def format_count(n: int) -> str:
    return f"{n:,}"


def format_time(ts: float | None, now: float | None = None) -> str:
    """Compact local time for a table cell: the time when it is today, else the date (the
    tooltip and the details panel give the full time)."""
    if ts is None:
        return ""
    start, end = _local_day(time.time() if now is None else now)
    return time.strftime("%H:%M:%S" if start <= ts < end else "%Y-%m-%d", time.localtime(ts))


_day: list[float] = [0.0, 0.0]  # [start, end) of the local day format_time saw last


def _local_day(now: float) -> tuple[float, float]:
    """Unix times of the local midnights before and after *now* (kept: a table refresh asks
    for thousands of cells' times within the same day)."""
    if not _day[0] <= now < _day[1]:
        t = time.localtime(now)
        _day[0] = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
        _day[1] = time.mktime((t.tm_year, t.tm_mon, t.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    return _day[0], _day[1]


def format_timestamp(ts: float | None) -> str:
    """Full local date and time to the millisecond, for tooltips and the details panel."""
    if ts is None:
        return "—"
    when = datetime.fromtimestamp(ts)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def format_attempts(task: Task) -> str:
    return f"{task.attempts}/{task.max_attempts}"


def compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return str(value)


def pretty_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=2)
    except (TypeError, ValueError):
        return str(value)


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """Collapse whitespace runs (newlines included) and cut to *limit* characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def preview(task: Task) -> str:
    """What a task produced, in one line: its error when it has one, else its result.

    A queued task can carry the error of an earlier attempt while it waits for the next one;
    showing it tells the user why the task is still queued.
    """
    if task.error:
        return one_line(task.error)
    if task.result is None:
        return ""
    result = task.result
    # Every built-in action answers {"output": value}; the value alone reads better.
    if isinstance(result, dict) and set(result) == {"output"}:
        result = result["output"]
    return one_line(result if isinstance(result, str) else compact_json(result))


def format_span(seconds: float) -> str:
    """A time ahead, roughly, as a person says it: '45 s', '4 min', '2 h 5 min', '3 d 4 h'."""
    if seconds < 59.5:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_due(task: Task, now: float) -> str:
    """Why a queued task has not started: 'due in 4 min' (delayed, or waiting to retry),
    'after 2 tasks' (it waits for them to complete), or both; '' for any other task."""
    if task.status != TaskStatus.QUEUED:
        return ""
    parts = []
    if task.run_after > now:
        parts.append(f"due in {format_span(task.run_after - now)}")
    if task.waiting:
        parts.append(f"after {task.waiting} task{'' if task.waiting == 1 else 's'}")
    return ", ".join(parts)
