"""What a JSON Schema property asks of a value: its kind, its bounds, and the text of it.

Pure functions with no widgets, for the schema form's editors (gui/schema_widgets.py) and
spin boxes. Text is read the way JSON writes values: numbers with "." whatever the locale.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

Schema = Mapping[str, Any]


class Unset(enum.Enum):
    UNSET = "unset"


UNSET = Unset.UNSET  # what an empty field reads as: the property is left out of the data


class FieldError(ValueError):
    """The text of one field cannot be converted; the message says why (without the name)."""


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
HUGE = 1e15  # beyond this a double spin box with decimals loses digits: use a line edit
MAX_DECIMALS = 10
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
PARTIAL_INTEGER = r"[+-]?\d*"  # everything typing an integer passes through
PARTIAL_NUMBER = r"[+-]?\d*\.?\d*([eE][+-]?\d*)?"
_COMBINATORS = ("oneOf", "anyOf", "allOf", "not", "if", "$ref")
_TYPE_KINDS = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: 2 == 2.0, but True is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def schema_type(schema: Schema) -> str | None:
    """The one JSON type the schema allows ("null" aside, so nullable fields still get one)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        kind = others[0] if len(others) == 1 else None
    return kind if isinstance(kind, str) else None


def choices(schema: Schema) -> list[Any] | None:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return list(schema["enum"])
    return [schema["const"]] if "const" in schema else None


def scalar_kind(schema: Schema) -> str | None:
    """"enum", "text", "integer", "number" or "boolean"; None for anything else."""
    return "enum" if choices(schema) is not None else _TYPE_KINDS.get(schema_type(schema) or "")


def field_kind(schema: Schema) -> str:
    """A scalar kind, "path", "list" (an array of scalars) or "json" (anything else)."""
    if any(key in schema for key in _COMBINATORS):
        return "json"
    kind = scalar_kind(schema)
    if kind == "text" and schema.get("format") == "path":
        return "path"
    if kind is not None:
        return kind
    items = schema.get("items")
    if schema_type(schema) == "array" and isinstance(items, Mapping) and scalar_kind(items):
        return "list" if not any(key in items for key in _COMBINATORS) else "json"
    return "json"


def choice_label(value: Any) -> str:
    return value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < HUGE else repr(value)


def parse_integer(text: str) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise FieldError(f"“{text.strip()}” is not a whole number")
    return int(text)


def parse_number(text: str) -> int | float:
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if not _NUMBER.fullmatch(text):
        raise FieldError(f"“{text}” is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise FieldError(f"“{text}” is too large")
    return value


def parse_scalar(text: str, schema: Schema) -> Any:
    """A list item's text as the value its schema asks for."""
    kind = scalar_kind(schema)
    if kind == "enum":
        options = choices(schema) or []
        for option in options:
            if choice_label(option) == text:
                return option
        raise FieldError(f"“{text}” is not one of {', '.join(map(choice_label, options))}")
    if kind == "integer":
        return parse_integer(text)
    if kind == "number":
        return parse_number(text)
    if kind == "boolean":
        if text.strip().lower() not in ("true", "false"):
            raise FieldError(f"“{text}” is not true or false")
        return text.strip().lower() == "true"
    return text


def scalar_text(value: Any, schema: Schema) -> str:
    kind = scalar_kind(schema)
    if kind == "enum" or (kind == "text" and not isinstance(value, str)):
        return choice_label(value)
    return value if kind == "text" else json.dumps(value)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Bounds:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # exclusiveMinimum
    high_open: bool = False

    @classmethod
    def of(cls, schema: Schema) -> Bounds:
        def number(key: str) -> float | None:
            value = schema.get(key)
            return value if is_number(value) else None

        low, low_open = number("minimum"), False
        if (bound := number("exclusiveMinimum")) is not None and (low is None or bound >= low):
            low, low_open = bound, True
        high, high_open = number("maximum"), False
        if (bound := number("exclusiveMaximum")) is not None and (high is None or bound <= high):
            high, high_open = bound, True
        return cls(low, high, low_open, high_open)

    def integers(self) -> tuple[int | None, int | None]:
        """The lowest and highest whole numbers allowed."""
        low = high = None
        if self.low is not None:
            low = math.floor(self.low) + 1 if self.low_open else math.ceil(self.low)
        if self.high is not None:
            high = math.ceil(self.high) - 1 if self.high_open else math.floor(self.high)
        return low, high

    def admits(self, value: float) -> bool:
        low, high = self.low, self.high
        return (low is None or value > low or (value == low and not self.low_open)) and (
            high is None or value < high or (value == high and not self.high_open)
        )

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {format_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '≤'} {format_number(self.high)}")
        return "must be " + " and ".join(parts)


def read_number(text: str, integer: bool, bounds: Bounds) -> Any:
    if not text.strip():
        return UNSET
    value = parse_integer(text) if integer else parse_number(text)
    if not bounds.admits(value):
        raise FieldError(f"{value} is out of range: {bounds.describe()}")
    return value
