"""When and in what order a submitted task runs: the options of a submission, checked.

The same rules for the API, the window and the command line: ``delay`` (seconds) or
``run_at`` (Unix seconds), ``priority`` (−100…100), ``after`` (ids of tasks to wait for) and an
idempotency key. Types are checked strictly (a JSON ``true`` is not a number), and a time in
the past beyond a minute or more than a year ahead is refused: both are almost always a unit
mistake (milliseconds for seconds) rather than an intent.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from service.errors import ValidationError

MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_AFTER = 100
MAX_AHEAD_SECONDS = 366 * 24 * 3600  # a year (a leap one included)
PAST_TOLERANCE_SECONDS = 60.0
MAX_IDEMPOTENCY_KEY = 255
MAX_TASK_ID_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Options:
    """Checked options: *run_after* None means at once."""

    priority: int = 0
    run_after: float | None = None
    after: tuple[str, ...] = ()
    idempotency_key: str | None = None


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number of seconds")
    try:
        number = float(value)
    except OverflowError:  # an integer past a float's range: as far out of range as one
        number = 1e308 if value > 0 else -1e308
    if not math.isfinite(number):
        raise ValidationError(f"{name} must be a finite number")
    return number


def check_options(
    now: float,
    *,
    priority: Any = 0,
    delay: Any = None,
    run_at: Any = None,
    after: Any = None,
    idempotency_key: Any = None,
) -> Options:
    """The options of one submission, checked at time *now*; ValidationError otherwise."""
    if priority is None:
        priority = 0
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)  # JSON Schema's integer: 18.0 is one
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValidationError(f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}")
    if delay is not None and run_at is not None:
        raise ValidationError("give delay or run_at, not both")
    run_after: float | None = None
    if delay is not None:
        seconds = _number("delay", delay)
        if seconds < 0:
            raise ValidationError("delay must not be negative")
        if seconds > MAX_AHEAD_SECONDS:
            raise ValidationError("delay must be at most a year (31,622,400 seconds)")
        run_after = now + seconds if seconds else None
    elif run_at is not None:
        when = _number("run_at", run_at)
        if when < now - PAST_TOLERANCE_SECONDS:
            raise ValidationError("run_at is in the past (more than a minute ago); it is Unix "
                                  "seconds, not milliseconds")
        if when > now + MAX_AHEAD_SECONDS:
            raise ValidationError("run_at is more than a year ahead; it is Unix seconds, not "
                                  "milliseconds")
        run_after = when if when > now else None
    return Options(priority, run_after, _after(after), _key(idempotency_key))


def _after(after: Any) -> tuple[str, ...]:
    if after is None:
        return ()
    if not isinstance(after, list):
        raise ValidationError("after must be a list of task ids")
    if len(after) > MAX_AFTER:
        raise ValidationError(f"after may name at most {MAX_AFTER} tasks")
    for item in after:
        if not isinstance(item, str) or not item or len(item) > MAX_TASK_ID_LENGTH:
            raise ValidationError("after must be a list of task ids (strings)")
    return tuple(dict.fromkeys(after))


def _key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ValidationError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    if any(not " " <= ch <= "~" for ch in key):
        raise ValidationError("Idempotency-Key must be printable ASCII characters")
    return key


def request_hash(action: str, data_json: str, priority: int, delay: Any, run_at: Any,
                 after: tuple[str, ...]) -> str:
    """What tells a repeated request from a different one under the same idempotency key:
    the request as given (a repeat of ``delay: 60`` a second later is the same request), as
    its meaning rather than its spelling: the checked *priority* and *after*, data with its
    names in any order, ``60`` and ``60.0`` alike, no delay and ``delay: 0`` alike."""
    canonical = json.dumps(
        [action, json.loads(data_json), priority, _seconds(delay) or None, _seconds(run_at),
         list(after)],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
