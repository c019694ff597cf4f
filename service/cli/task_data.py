"""A task's data from ``key=value`` words, typed by the action's JSON Schema (GET /actions).

The rule, for a property of the schema's top-level ``properties``:

- ``integer``: ``n=3`` → 3; ``number``: ``x=2.5`` → 2.5 (``x=2`` → 2);
- ``boolean``: ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``);
- ``array``: a comma-separated list, each item typed by the schema's ``items``: ``tags=a,b`` →
  ``["a", "b"]``, ``ns=1,2`` → ``[1, 2]`` for integer items, ``tags=`` → ``[]``;
- ``object``: JSON text; ``null``: ``null``;
- ``string``, a property the schema does not describe, or an action it does not know: the
  text as it is.

Where a property allows several types (``["integer", "string"]``), the first one in the
schema's order that takes the text wins. ``key:=JSON`` sets any JSON value as it is
(``n:=3``, ``opts:={"a":1}``), whatever the schema says; ``--data JSON`` gives the whole data.
The API still validates the result against the schema, as for any client.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NAMES = {"integer": "an integer", "number": "a number", "boolean": "true or false",
          "null": "null", "object": "a JSON object"}


class DataError(ValueError):
    """A word that cannot be made into the data; the message names it."""


def build_data(words: Sequence[str], schema: Any) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        properties = {}
    data: dict[str, Any] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or key in ("", ":"):
            raise DataError(f"{word!r} is not key=value (or key:=JSON)")
        if key.endswith(":"):
            key = key[:-1]
            try:
                data[key] = json.loads(text)
            except ValueError as exc:
                raise DataError(f"{word!r}: the value after := is not JSON ({exc})") from None
            continue
        try:
            data[key] = typed(text, properties.get(key))
        except DataError as exc:
            raise DataError(f"{word!r}: the action's schema wants {exc}") from None
    return data


def typed(text: str, schema: Any) -> Any:
    """*text* as the type *schema* asks for; DataError naming what it wants otherwise."""
    kinds = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list) or not kinds:
        return text
    for kind in kinds:
        if kind == "string":
            return text
        try:
            return _convert(text, kind, schema)
        except DataError:
            continue
    raise DataError(" or ".join(_describe(kind, schema) for kind in kinds))


def _describe(kind: object, schema: dict[str, Any]) -> str:
    if kind == "array":
        items = schema.get("items")
        item_kind = items.get("type") if isinstance(items, dict) else None
        if isinstance(item_kind, str) and item_kind != "string":
            return f"a comma-separated list of items each {_NAMES.get(item_kind, item_kind)}"
        return "a comma-separated list"
    return _NAMES.get(str(kind), str(kind))


def _convert(text: str, kind: object, schema: dict[str, Any]) -> Any:
    if kind == "integer" and _INTEGER.fullmatch(text.strip()):
        return int(text)
    if kind == "number":
        if _INTEGER.fullmatch(text.strip()):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    if kind == "boolean" and text.strip().lower() in _TRUE | _FALSE:
        return text.strip().lower() in _TRUE
    if kind == "null" and text == "null":
        return None
    if kind == "array":
        if text == "":
            return []
        items = schema.get("items")
        return [typed(item, items) for item in text.split(",")]
    if kind == "object":
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                return value
    raise DataError(_describe(kind, schema))
