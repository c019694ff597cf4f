"""``{name}`` placeholders in a command's arguments, and what replaces them.

``{name}`` is replaced by ``data[name]`` inside the one argument it appears in: a string as
it is, a number or boolean as its JSON text; ``{{`` and ``}}`` are literal braces. No shell
ever sees the values (unless the command declares ``shell = true``; then each value is
quoted for /bin/sh). An argument that is exactly ``{name}`` whose value is a list of such
scalars becomes one argument per item (none for an empty list): the one way to pass a list
of files, say, without a shell. Any other list, an object, null or a missing value is an
error naming the field.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

_TOKENS = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class PlaceholderError(ValueError):
    """An argument template that cannot be used, or data it cannot be filled with."""


@functools.lru_cache(maxsize=4096)
def parse(template: str) -> tuple[str | tuple[str], ...]:
    """*template* as literal strings and 1-tuples holding a placeholder's name."""
    parts: list[str | tuple[str]] = []
    literal = ""
    position = 0
    for match in _TOKENS.finditer(template):
        literal += template[position:match.start()]
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
        elif token in ("{", "}"):
            raise PlaceholderError(
                f"unmatched {token!r} in {template!r} (write {token * 2} for a literal brace)")
        else:
            name = match.group(1)
            if not name:
                raise PlaceholderError(f"empty placeholder {{}} in {template!r}")
            if literal:
                parts.append(literal)
                literal = ""
            parts.append((name,))
    literal += template[position:]
    if literal:
        parts.append(literal)
    return tuple(parts)


def names(template: str) -> list[str]:
    """The placeholder names in *template*, in order."""
    return [part[0] for part in parse(template) if isinstance(part, tuple)]


def _scalar_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = json.dumps(value)
    elif value is None:
        raise PlaceholderError(f"data.{name} is null; the command's {{{name}}} needs a value")
    else:
        kind = "a list" if isinstance(value, list) else "an object"
        raise PlaceholderError(f"data.{name} is {kind}; {{{name}}} takes a string, number or "
                               "boolean (a list only as a whole argument)")
    if "\0" in text:
        raise PlaceholderError(f"data.{name} holds a NUL character, which no argument can")
    return text


def _value(name: str, data: Mapping[str, Any]) -> Any:
    if name not in data:
        raise PlaceholderError(f"data.{name} is missing; the command's {{{name}}} needs it")
    return data[name]


def fill_argument(template: str, data: Mapping[str, Any]) -> list[str]:
    """The argument(s) *template* stands for: one, or one per item of a list."""
    parts = parse(template)
    if len(parts) == 1 and isinstance(parts[0], tuple):
        name = parts[0][0]
        value = _value(name, data)
        if isinstance(value, list):
            return [_scalar_text(f"{name}[{i}]", item) for i, item in enumerate(value)]
        return [_scalar_text(name, value)]
    return ["".join(p if isinstance(p, str) else _scalar_text(p[0], _value(p[0], data))
                    for p in parts)]


def fill_shell(template: str, data: Mapping[str, Any]) -> str:
    """*template* as a /bin/sh command with each value quoted (a list: its items, quoted,
    separated by spaces)."""
    pieces: list[str] = []
    for part in parse(template):
        if isinstance(part, str):
            pieces.append(part)
            continue
        name = part[0]
        value = _value(name, data)
        items = ([_scalar_text(f"{name}[{i}]", v) for i, v in enumerate(value)]
                 if isinstance(value, list) else [_scalar_text(name, value)])
        pieces.append(" ".join(shlex.quote(item) for item in items))
    return "".join(pieces)
