"""The tutorial's actions: ``uppercase``, ``sum`` and the default for any other name.

They are ordinary actions with schemas; ``sum`` adds a check for what a schema cannot say
(the total must be representable). As before, data may carry other properties, ``text``
defaults to "" and ``numbers`` to []. They keep the tutorial's simulated --work-delay.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from service.actions.base import Action, JsonObject, RunContext
from service.errors import ValidationError

BUILTIN_SOURCE = "built-in"

UPPERCASE_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "text": {
            "type": "string",
            "title": "Text",
            "description": "The text to write in capitals",
        },
    },
}

SUM_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "numbers": {
            "type": "array",
            "title": "Numbers",
            "description": "The numbers to add up",
            "items": {"type": "number"},
        },
    },
}

# Any JSON object: the default action takes whatever data it is given.
ANY_OBJECT_SCHEMA: JsonObject = {"type": "object"}


def _uppercase(data: JsonObject, ctx: RunContext) -> JsonObject:
    return {"output": str(data.get("text", "")).upper()}


def sum_total(numbers: list[int | float]) -> int | float:
    """The total of *numbers*; ValidationError when it cannot be represented as JSON."""
    # Integers add exactly; with any float, fsum avoids the drift of repeated rounding.
    too_large = ValidationError("sum: the total is too large to represent",
                                {"numbers": "the total is too large to represent"})
    try:
        total = math.fsum(numbers) if any(isinstance(n, float) for n in numbers) else sum(numbers)
    except OverflowError:
        raise too_large from None
    if isinstance(total, float) and not math.isfinite(total):
        raise too_large
    # Python writes integers of at most 4,300 digits as text (sys.get_int_max_str_digits);
    # a larger total could be computed but never stored as a result.
    digits = sys.get_int_max_str_digits()
    if isinstance(total, int) and digits and abs(total) >= 10**digits:
        raise too_large
    return total


def _numbers(data: JsonObject) -> list[Any]:
    numbers = data.get("numbers", [])
    return numbers if isinstance(numbers, list) else []


def _check_sum(data: JsonObject) -> None:
    # Runs after the schema: numbers, if present, is a list of numbers.
    sum_total(_numbers(data))


def _sum(data: JsonObject, ctx: RunContext) -> JsonObject:
    return {"output": sum_total(_numbers(data))}


def _processed(data: JsonObject, ctx: RunContext) -> JsonObject:
    return {"output": "processed"}


UPPERCASE = Action(
    name="uppercase",
    description='data.text → {"output": TEXT}',
    schema=UPPERCASE_SCHEMA,
    kind="builtin",
    run=_uppercase,
    source=BUILTIN_SOURCE,
    simulated_work=True,
)

SUM = Action(
    name="sum",
    description='data.numbers → {"output": total}',
    schema=SUM_SCHEMA,
    kind="builtin",
    run=_sum,
    source=BUILTIN_SOURCE,
    check=_check_sum,
    simulated_work=True,
)

# Not registered under a name: the registry runs it for names no action has, when accepting.
DEFAULT_ACTION = Action(
    name="*",
    description='any other action: {"output": "processed"}',
    schema=ANY_OBJECT_SCHEMA,
    kind="builtin",
    run=_processed,
    source=BUILTIN_SOURCE,
    simulated_work=True,
)

BUILTIN_ACTIONS = (UPPERCASE, SUM)
