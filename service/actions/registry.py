"""ActionRegistry: every action by name, and the validation of a submission's data.

Names are unique: registering a taken name raises DuplicateActionError naming both sources
(fatal at start-up). Each action's schema is checked and compiled once, at registration;
``validate`` runs on every POST, so it first asks the quick check (a few µs) and only when
that is not sure asks jsonschema, which then also explains what is wrong.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaViolation

from service.actions.base import Action, DuplicateActionError, InvalidActionError, JsonObject
from service.actions.builtin import DEFAULT_ACTION
from service.actions.quick_check import QuickCheck, compile_quick_check
from service.errors import ValidationError

UnknownActions = Literal["accept", "refuse"]

# At most this many problems are collected from one submission (a list of 100,000 wrong
# items would otherwise cost seconds), and this many are spelled out in the message.
MAX_ERRORS = 50
MAX_ERRORS_SHOWN = 10
# jsonschema quotes the offending value in its messages; a 1 MiB string is cut in the middle.
MAX_MESSAGE_CHARS = 200

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def schema_problem(schema: Any) -> str | None:
    """Why *schema* is not a usable JSON Schema (draft 2020-12) object, or None."""
    if not isinstance(schema, dict):
        return "the schema must be an object (a table)"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = field_path(exc.absolute_path)
        return f"invalid schema{' at ' + where if where else ''}: {_shorten(exc.message)}"
    except Exception as exc:  # e.g. a pattern jsonschema cannot even compile
        return f"invalid schema: {type(exc).__name__}: {_shorten(str(exc))}"
    return None


@dataclass(frozen=True)
class _Entry:
    action: Action
    validator: Draft202012Validator
    quick: QuickCheck | None


class ActionRegistry:
    """Actions by name. *unknown* says what a name no action has does: ``accept`` runs the
    tutorial's default action (``{"output": "processed"}``); ``refuse`` refuses it at submit."""

    def __init__(self, unknown: UnknownActions = "accept") -> None:
        if unknown not in ("accept", "refuse"):
            raise ValueError(f"unknown must be 'accept' or 'refuse', not {unknown!r}")
        self.unknown: UnknownActions = unknown
        self.default = DEFAULT_ACTION
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._default_entry = _compile(DEFAULT_ACTION)

    def register(self, action: Action) -> None:
        """Add *action*; DuplicateActionError when its name is taken, InvalidActionError when
        its schema is not a valid JSON Schema."""
        entry = _compile(action)
        with self._lock:
            taken = self._entries.get(action.name)
            if taken is not None:
                raise DuplicateActionError(action.name, action.source, taken.action.source)
            # Copy on write: readers on other threads see the old or the new dict, never a
            # dict being changed.
            self._entries = {**self._entries, action.name: entry}

    def get(self, name: str) -> Action | None:
        entry = self._entries.get(name)
        return entry.action if entry is not None else None

    def resolve(self, name: str) -> Action:
        """The action a task named *name* runs: its own, or the default one when unknown
        names are accepted; ValidationError when they are refused."""
        return self._resolve(name).action

    def names(self) -> list[str]:
        return sorted(self._entries)

    def actions(self) -> list[Action]:
        entries = self._entries
        return [entries[name].action for name in sorted(entries)]

    def describe(self) -> list[dict[str, Any]]:
        """What ``GET /actions`` lists: name, description, kind and schema of each action."""
        return [
            {"name": a.name, "description": a.description, "kind": a.kind, "schema": a.schema}
            for a in self.actions()
        ]

    def validate(self, name: str, data: JsonObject) -> None:
        """Refuse (ValidationError) data the action *name* cannot take: the schema first, with
        every problem's path and rule (also in ``error.fields``), then the action's check."""
        entry = self._resolve(name)
        if entry.quick is None or not entry.quick(data):
            errors = list(itertools.islice(entry.validator.iter_errors(data), MAX_ERRORS))
            if errors:
                raise _explain(errors)
        if entry.action.check is not None:
            entry.action.check(data)

    def _resolve(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        if self.unknown == "accept":
            return self._default_entry
        known = ", ".join(self.names()) or "none"
        raise ValidationError(f"unknown action {name!r}; known actions: {known}")


def _compile(action: Action) -> _Entry:
    problem = schema_problem(action.schema)
    if problem is not None:
        raise InvalidActionError(f"action {action.name!r} from {action.source}: {problem}")
    return _Entry(action, Draft202012Validator(action.schema),
                  compile_quick_check(action.schema))


# -- messages -----------------------------------------------------------------------------------


def field_path(path: Iterable[str | int]) -> str:
    """``numbers[1]``, ``options.level``, ``["a b"]``; ``""`` for the data itself."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _explain(errors: Sequence[SchemaViolation]) -> ValidationError:
    problems: list[tuple[tuple[tuple[int, Any], ...], str, str]] = []
    seen_required: set[tuple[Any, ...]] = set()
    for error in errors:
        for parts, message in _problems(error, seen_required):
            problems.append((_sort_key(parts), field_path(parts), message))
    problems.sort()
    fields: dict[str, str] = {}
    for _, path, message in problems:
        fields[path] = f"{fields[path]}; {message}" if path in fields else message
    shown = [f"data{'.' if path and path[0] != '[' else ''}{path}: {message}"
             for _, path, message in problems[:MAX_ERRORS_SHOWN]]
    more = len(problems) - len(shown)
    if len(errors) >= MAX_ERRORS:
        shown.append("and more")
    elif more:
        shown.append(f"and {more} more")
    return ValidationError("; ".join(shown), fields)


def _problems(
    error: SchemaViolation, seen_required: set[tuple[Any, ...]]
) -> list[tuple[list[str | int], str]]:
    """(path, message) of each problem in *error*: a missing or unexpected property is a
    problem of that property, so that a form can show it beside the field."""
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        # jsonschema reports each missing name as its own error, with the same schema path:
        # report them all at the first and skip the rest.
        key = (*path, "|", *error.absolute_schema_path)
        if key in seen_required:
            return []
        seen_required.add(key)
        missing = [n for n in error.validator_value if isinstance(n, str) and n not in instance]
        return [([*path, name], "required") for name in missing]
    if (error.validator == "additionalProperties" and error.validator_value is False
            and isinstance(instance, dict) and isinstance(error.schema, dict)):
        known = error.schema.get("properties", {})
        patterns = list(error.schema.get("patternProperties", {}))
        extra = [n for n in instance
                 if n not in known and not any(re.search(p, n) for p in patterns)]
        if extra:
            return [([*path, name], "not allowed (no such field)") for name in extra]
    return [(path, _shorten(error.message))]


def _sort_key(path: Sequence[str | int]) -> tuple[tuple[int, Any], ...]:
    # Indexes in numeric order, and never an int compared with a str.
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in path)


def _shorten(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    half = MAX_MESSAGE_CHARS // 2 - 1
    return f"{text[:half]}…{text[-half:]}"

