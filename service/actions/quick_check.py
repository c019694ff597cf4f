"""A quick "certainly valid" test for the common JSON Schemas, ahead of jsonschema.

jsonschema validates ``{"text": "hello"}`` against uppercase's schema in about 17 µs, and
that runs on every POST. Most action schemas use a handful of keywords (type, properties,
required, items, enum, bounds, lengths, pattern); for those ``compile_quick_check`` builds a
plain function that answers True only when jsonschema would find no error, in a few µs.
False means "not sure": the registry then asks jsonschema, which stays the only judge and
the only source of error messages. A schema using anything else gets no quick check.

Each keyword mirrors jsonschema's own test (draft 2020-12, no format assertion), but only
for values of exactly the built-in JSON types; anything else answers "not sure".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

QuickCheck = Callable[[Any], bool]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# Annotations: they never make an instance invalid (format is not asserted by default).
_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
    "writeOnly", "format", "contentMediaType", "contentEncoding", "contentSchema",
})

_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    # bool is a subclass of int in Python; JSON's true/false are not numbers.
    "number": (int, float),
    # jsonschema also takes 1.0 as an integer: floats answer "not sure" below.
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}

_NUMBER_TYPES = (int, float)


def compile_quick_check(schema: Any, *, root: bool = True) -> QuickCheck | None:
    """A function True only for instances valid against *schema*; None when the schema uses
    something this module does not mirror."""
    if schema is True:
        return _always
    if schema is False or not isinstance(schema, dict):
        return None
    checks: list[QuickCheck] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "$schema":
            if not root or value != DRAFT_2020_12:
                return None
            continue
        check = _KEYWORDS.get(keyword, _unsupported)(value, schema)
        if check is None:
            return None
        checks.append(check)
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return _all_of(checks)


def _always(instance: Any) -> bool:
    return True


# The loops below are loops, not all(…): a generator costs more than the check itself here.


def _all_of(checks: list[QuickCheck]) -> QuickCheck:
    def check(instance: Any) -> bool:
        for one in checks:  # noqa: SIM110
            if not one(instance):
                return False
        return True

    return check


def _unsupported(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    return None


def _type(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        return None
    allowed: list[type] = []
    for name in names:
        if name not in _EXACT_TYPES:
            return None
        allowed.extend(_EXACT_TYPES[name])
    exact = frozenset(allowed)
    return lambda instance: type(instance) in exact


def _properties(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if not isinstance(value, dict):
        return None
    subs: list[tuple[str, QuickCheck]] = []
    for name, sub_schema in value.items():
        sub = compile_quick_check(sub_schema, root=False)
        if sub is None:
            return None
        if sub is not _always:
            subs.append((name, sub))

    def check(instance: Any) -> bool:
        if type(instance) is not dict:
            return not isinstance(instance, dict)  # a dict subclass: not sure
        for name, sub in subs:  # noqa: SIM110
            if name in instance and not sub(instance[name]):
                return False
        return True

    return check


def _required(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    names = tuple(value)

    def check(instance: Any) -> bool:
        if type(instance) is not dict:
            return not isinstance(instance, dict)
        return all(name in instance for name in names)

    return check


def _additional_properties(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    properties = schema.get("properties", {})
    if "patternProperties" in schema or not isinstance(properties, dict):
        return None
    known = frozenset(properties)
    sub = compile_quick_check(value, root=False) if value is not False else None
    if value is not False and sub is None:
        return None

    def check(instance: Any) -> bool:
        if type(instance) is not dict:
            return not isinstance(instance, dict)
        for name in instance:
            if name not in known and (sub is None or not sub(instance[name])):
                return False
        return True

    return check


def _items(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if "prefixItems" in schema:
        return None
    sub = compile_quick_check(value, root=False)
    if sub is None:
        return None

    def check(instance: Any) -> bool:
        if type(instance) is not list:
            return not isinstance(instance, list)
        for item in instance:  # noqa: SIM110
            if not sub(item):
                return False
        return True

    return check


def _enum(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if not isinstance(value, list):
        return None
    # jsonschema's equality: strings equal strings, True only True, 1 == 1.0. Only the
    # exact cases are answered here (1.0 against [1], say, answers "not sure").
    strings = frozenset(v for v in value if type(v) is str)
    ints = frozenset(v for v in value if type(v) is int)
    bools = frozenset(v for v in value if type(v) is bool)
    null = any(v is None for v in value)

    def check(instance: Any) -> bool:
        kind = type(instance)
        if kind is str:
            return instance in strings
        if kind is int:
            return instance in ints
        if kind is bool:
            return instance in bools
        return instance is None and null

    return check


def _const(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if value is not None and type(value) not in (str, int, bool):
        return None
    return lambda instance: type(instance) is type(value) and instance == value


def _bound(test: Callable[[Any, Any], bool]) -> Callable[[Any, dict[str, Any]], QuickCheck | None]:
    def make(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
        if type(value) not in _NUMBER_TYPES:
            return None

        def check(instance: Any) -> bool:
            kind = type(instance)
            if kind is int or kind is float:
                return test(instance, value)
            return kind is bool or not isinstance(instance, _NUMBER_TYPES)

        return check

    return make


def _length(of: type, test: Callable[[int, int], bool]) -> Callable[
        [Any, dict[str, Any]], QuickCheck | None]:
    def make(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
        if type(value) is not int:
            return None

        def check(instance: Any) -> bool:
            if type(instance) is of:
                return test(len(instance), value)  # type: ignore[arg-type]
            return not isinstance(instance, of)

        return check

    return make


def _pattern(value: Any, schema: dict[str, Any]) -> QuickCheck | None:
    if not isinstance(value, str):
        return None
    try:
        search = re.compile(value).search  # jsonschema uses re.search too
    except re.error:
        return None

    def check(instance: Any) -> bool:
        if type(instance) is str:
            return search(instance) is not None
        return not isinstance(instance, str)

    return check


# The same comparisons jsonschema makes (a NaN passes every bound there, and here).
_KEYWORDS: dict[str, Callable[[Any, dict[str, Any]], QuickCheck | None]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional_properties,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(lambda x, bound: not x < bound),
    "maximum": _bound(lambda x, bound: not x > bound),
    "exclusiveMinimum": _bound(lambda x, bound: not x <= bound),
    "exclusiveMaximum": _bound(lambda x, bound: not x >= bound),
    "minLength": _length(str, lambda n, bound: n >= bound),
    "maxLength": _length(str, lambda n, bound: n <= bound),
    "minItems": _length(list, lambda n, bound: n >= bound),
    "maxItems": _length(list, lambda n, bound: n <= bound),
    "pattern": _pattern,
}
