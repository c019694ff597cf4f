"""The action registry: what a task's ``action`` does with its ``data``.

Every action has a validator that runs at submit time (so input that can never succeed is
refused with a 400 and nothing is stored) and a handler that runs on a worker thread and
returns the JSON value stored as the task's ``result``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.errors import ValidationError

JsonObject = dict[str, Any]
Handler = Callable[[JsonObject], Any]
Validator = Callable[[JsonObject], None]


@dataclass(frozen=True)
class Action:
    name: str
    handler: Handler
    validate: Validator
    description: str


def _no_validation(data: JsonObject) -> None:
    return None


def _validate_uppercase(data: JsonObject) -> None:
    text = data.get("text", "")
    if not isinstance(text, str):
        raise ValidationError("uppercase: data.text must be a string")


def _uppercase(data: JsonObject) -> JsonObject:
    return {"output": str(data.get("text", "")).upper()}


def _numbers(data: JsonObject) -> list[int | float]:
    numbers = data.get("numbers", [])
    if not isinstance(numbers, list):
        raise ValidationError("sum: data.numbers must be a list of numbers")
    for i, n in enumerate(numbers):
        # bool is an int subclass in Python, but true/false are not numbers in JSON.
        if isinstance(n, bool) or not isinstance(n, int | float):
            raise ValidationError(f"sum: data.numbers[{i}] is not a number")
    return numbers


def _sum_total(numbers: list[int | float]) -> int | float:
    # Integers add exactly; with any float, fsum avoids the drift of repeated rounding.
    too_large = ValidationError("sum: the total is too large to represent")
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


def _validate_sum(data: JsonObject) -> None:
    _sum_total(_numbers(data))


def _sum(data: JsonObject) -> JsonObject:
    return {"output": _sum_total(_numbers(data))}


def _processed(data: JsonObject) -> JsonObject:
    return {"output": "processed"}


class ActionRegistry:
    """Maps action names to actions; any unknown name runs the default action."""

    def __init__(self, default: Action) -> None:
        self._actions: dict[str, Action] = {}
        self.default = default

    def register(self, action: Action) -> None:
        self._actions[action.name] = action

    def get(self, name: str) -> Action:
        return self._actions.get(name, self.default)

    def names(self) -> list[str]:
        return sorted(self._actions)


def default_registry() -> ActionRegistry:
    """The actions of the original tutorial."""
    registry = ActionRegistry(
        Action("*", _processed, _no_validation, 'any other action: {"output": "processed"}')
    )
    registry.register(
        Action("uppercase", _uppercase, _validate_uppercase, 'data.text → {"output": TEXT}')
    )
    registry.register(Action("sum", _sum, _validate_sum, 'data.numbers → {"output": total}'))
    return registry
