"""What the subcommands print for people: aligned tables, statuses in colour, local times.

Colour only on a terminal and never with ``NO_COLOR`` set (https://no-color.org); piped, the
same table comes out plain. Scripts use ``--json``, which prints the API's JSON as it came.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

STATUS_COLOURS = {  # ANSI SGR codes
    "queued": "36",  # cyan
    "running": "33",  # yellow
    "completed": "32",  # green
    "failed": "31",  # red
    "cancelled": "35",  # magenta
    "deleted": "35",
}
GAP = "  "
# A table's last column is cut to the terminal's width; piped, to this many characters.
PIPED_LAST_COLUMN = 80
ELLIPSIS = "…"

Cell = str | tuple[str, str]  # text, or (text, ANSI code)


class Style:
    def __init__(self, colour: bool, width: int | None) -> None:
        self.colour = colour
        self.width = width  # the terminal's columns; None when not a terminal

    @classmethod
    def of(cls, stream: IO[str]) -> Style:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        width = None
        if tty:
            try:
                # 0 for a terminal that was never given a size (a bare pty)
                width = os.get_terminal_size(stream.fileno()).columns or 80
            except (OSError, ValueError, AttributeError):
                width = 80
        return cls(tty and not os.environ.get("NO_COLOR"), width)

    def paint(self, text: str, code: str | None) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def status(self, status: str, text: str | None = None) -> str:
        return self.paint(status if text is None else text, STATUS_COLOURS.get(status))

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")


def table(style: Style, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> list[str]:
    """Lines of a table with aligned columns; the last column is cut to fit."""
    plain = [[c if isinstance(c, str) else c[0] for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for texts in plain:
        for i, text in enumerate(texts[:-1]):
            widths[i] = max(widths[i], len(text))
    room = PIPED_LAST_COLUMN
    if style.width is not None:
        room = max(10, style.width - sum(widths[:-1]) - len(GAP) * (len(headers) - 1))
    lines = [style.bold(GAP.join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
                        .rstrip())]
    for row, texts in zip(rows, plain, strict=True):
        cells = []
        for i, (cell, text) in enumerate(zip(row, texts, strict=True)):
            last = i == len(row) - 1
            shown = cut(text, room) if last else text.ljust(widths[i])
            code = None if isinstance(cell, str) else cell[1]
            # Padding stays outside the colour, so that colours never shift the columns.
            cells.append(style.paint(shown.rstrip(), code) + shown[len(shown.rstrip()):])
        lines.append(GAP.join(cells).rstrip())
    return lines


def cut(text: str, room: int) -> str:
    text = " ".join(text.split())  # one line per row, whatever the text holds
    return text if len(text) <= room else text[:room - 1] + ELLIPSIS


def local_time(seconds: float | None, *, full: bool = False) -> str:
    """A stored Unix time in local time: only the time of day for today (in a table)."""
    if seconds is None:
        return "-"
    moment = time.localtime(seconds)
    if full:
        return time.strftime("%Y-%m-%d %H:%M:%S", moment)
    if moment[:3] == time.localtime()[:3]:
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def outcome(task: dict[str, Any]) -> str:
    """A task's result, error or state in a few words: the last column of ``list``."""
    status = task.get("status")
    if status == "completed":
        result = task.get("result")
        return "" if result is None else compact(result)
    if status in ("failed", "cancelled"):
        return str(task.get("error") or "")
    if status == "running":
        progress = task.get("progress")
        message = task.get("progress_message") or ""
        if task.get("cancel_requested"):
            return "cancelling"
        return f"{progress:.0%} {message}".strip() if progress is not None else message
    waiting = task.get("after") or []
    if waiting:
        return f"after {len(waiting)} task(s)"
    due = task.get("run_after")
    if due is not None and due > time.time():
        return f"due {local_time(due)}"
    return ""


def write_lines(lines: Sequence[str], stream: IO[str] | None = None) -> None:
    out = stream or sys.stdout
    out.write("".join(line + "\n" for line in lines))
    out.flush()


def write_json(body: bytes) -> None:
    """The API's JSON as it came, one document per line."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    out.write(body.rstrip(b"\n") + b"\n")
    out.flush()
