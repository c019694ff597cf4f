"""Where each table and key of a TOML text is: tomllib parses without keeping positions, and
an error in the actions file must name its line.

``key_lines(text)`` scans the text once, line by line, skipping the insides of strings
(multi-line ones included), comments and values that span lines (arrays, inline tables), and
records the line of every table header (``[a.b]``, ``[[a.b]]``) and every key assignment
(``c.d = …``) under its full path. The text is known to be valid TOML when this runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence

KeyPath = tuple[str, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\]|\\.)*"')
_LITERAL = re.compile(r"'[^']*'")


class KeyLines:
    """The line of each key path of one TOML text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        _scan(text, self.lines)

    def line_of(self, path: Sequence[str]) -> int:
        """The line where *path* is written, or where its nearest written parent is (a key
        inside an inline table is on its table's line); 1 when none is."""
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return 1


def _record(lines: dict[KeyPath, int], path: KeyPath, line: int) -> None:
    # Every prefix too: ``a.b.c = 1`` is where a.b is first written if nothing said so before.
    for n in range(1, len(path) + 1):
        lines.setdefault(path[:n], line)


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """A dotted key starting at *pos* (after blanks): its parts and where it ends."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        match = _BARE.match(text, pos) or _BASIC.match(text, pos) or _LITERAL.match(text, pos)
        if match is None:
            return None
        token = match.group(0)
        if token[0] == '"':
            parts.append(tomllib.loads(f"k = {token}")["k"])
        elif token[0] == "'":
            parts.append(token[1:-1])
        else:
            parts.append(token)
        pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


def _scan(text: str, lines: dict[KeyPath, int]) -> None:
    table: KeyPath = ()
    depth = 0  # open [ and { of a value that goes on over lines
    in_string: str | None = None  # the delimiter of a multi-line string we are inside
    # Lines end at "\n" only, as tomllib counts them (splitlines would also split at \x1c…).
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        pos = 0
        if in_string is not None:
            pos = _string_end(line, 0, in_string)
            if pos < 0:
                continue
            in_string = None
        elif depth == 0:
            stripped = line.lstrip(" \t")
            start = len(line) - len(stripped)
            if stripped.startswith("["):
                double = stripped.startswith("[[")
                parsed = _parse_key(line, start + (2 if double else 1))
                if parsed is not None:
                    table = tuple(parsed[0])
                    _record(lines, table, number)
                continue
            if stripped and not stripped.startswith("#"):
                parsed = _parse_key(line, start)
                if parsed is not None and parsed[1] < len(line) and line[parsed[1]] == "=":
                    _record(lines, (*table, *parsed[0]), number)
                    pos = parsed[1] + 1
                else:
                    continue
        depth, in_string = _scan_value(line, pos, depth)


def _string_end(line: str, pos: int, delimiter: str) -> int:
    """Where a multi-line string closing in *line* ends (after its delimiter), or -1."""
    while True:
        found = line.find(delimiter, pos)
        if found < 0:
            return -1
        if delimiter == '"""' and _escaped(line, found):
            pos = found + 1
            continue
        # A closing delimiter may be followed by up to two more quotes belonging to the text.
        end = found + 3
        while end < len(line) and line[end] == delimiter[0] and end < found + 5:
            end += 1
        return end


def _escaped(line: str, pos: int) -> bool:
    backslashes = 0
    while pos - backslashes - 1 >= 0 and line[pos - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _scan_value(line: str, pos: int, depth: int) -> tuple[int, str | None]:
    """Follow brackets and strings through the rest of *line*; the bracket depth after it and
    the delimiter of a multi-line string left open at its end."""
    while pos < len(line):
        char = line[pos]
        if char == "#":
            break
        if line.startswith('"""', pos) or line.startswith("'''", pos):
            delimiter = line[pos:pos + 3]
            end = _string_end(line, pos + 3, delimiter)
            if end < 0:
                return depth, delimiter
            pos = end
            continue
        if char == '"':
            match = _BASIC.match(line, pos)
            pos = match.end() if match else len(line)
            continue
        if char == "'":
            match = _LITERAL.match(line, pos)
            pos = match.end() if match else len(line)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        pos += 1
    return depth, None
