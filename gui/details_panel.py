"""DetailsPanel: everything about the selected task, and buttons for what can be done to it.

Shows the task's fields and every timestamp in local time, its data, result and error
pretty-printed, in one read-only, selectable text view; for several selected tasks, a summary.
The buttons are the shared QActions of gui/task_actions.py.

Threads: GUI thread only; the window passes in tasks it already read.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFontDatabase, QPalette
from PySide6.QtWidgets import QHBoxLayout, QTextBrowser, QToolButton, QVBoxLayout, QWidget

from gui.formatting import (
    format_attempts,
    format_duration,
    format_timestamp,
    pretty_json,
    short_id,
)
from gui.status_style import STATUS_LABELS, badge_colors, readable_color, status_color
from storage import STATUSES, Task

MAX_LISTED = 12  # ids listed for a multiple selection
MAX_SHOWN_CHARS = 200_000  # data and results can be 1 MiB; keep the view quick


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _block(title: str, body: str, color: str | None = None) -> str:
    if len(body) > MAX_SHOWN_CHARS:
        body = body[:MAX_SHOWN_CHARS] + "\n… (cut; copy the task as curl or use the API for all)"
    style = f' style="color:{color}"' if color else ""
    return f"<h4>{_esc(title)}</h4><pre{style}>{_esc(body)}</pre>"


class DetailsPanel(QWidget):
    def __init__(self, actions: Sequence[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = QTextBrowser(self)
        self.view.setOpenLinks(False)
        self.view.setFrameShape(QTextBrowser.Shape.NoFrame)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        # Qt's rich text knows no palette() in CSS, so the muted colour is resolved here.
        muted = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        self.view.document().setDefaultStyleSheet(
            f"pre {{ font-family: '{mono}'; margin: 0px; white-space: pre-wrap; }}"
            "h4 { margin-top: 10px; margin-bottom: 3px; }"
            "td { padding: 1px 12px 1px 0px; }"
            f"td.k {{ color: {muted}; }}"
        )
        self.buttons: list[QToolButton] = []
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for action in actions:
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            self.buttons.append(button)
            row.addWidget(button)
        row.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        self._shown: list[Task] = []
        self.show_tasks([])

    @property
    def shown(self) -> list[Task]:
        return list(self._shown)

    def show_tasks(self, tasks: Sequence[Task]) -> None:
        tasks = list(tasks)
        if tasks == self._shown and self.view.toPlainText():
            return  # unchanged: keep the user's scroll position and text selection
        self._shown = tasks
        if not tasks:
            self.view.setHtml(
                "<p style='color:gray'>Select a task to see its data, result and timings."
                "<br><br>Ctrl+Enter submits a task, Ctrl+F searches.</p>"
            )
        elif len(tasks) == 1:
            self.view.setHtml(self._one(tasks[0]))
        else:
            self.view.setHtml(self._many(tasks))

    def _badge(self, status: str) -> str:
        fill, text = badge_colors(status, self.palette())
        return (
            f"<span style='background-color:{fill.name()}; color:{text.name()};'>"
            f"&nbsp;{_esc(STATUS_LABELS.get(status, status))}&nbsp;</span>"
        )

    def _one(self, task: Task) -> str:
        rows = [
            ("ID", f"<code>{_esc(task.id)}</code>"),
            ("Action", f"<b>{_esc(task.action)}</b>"),
            ("Status", self._badge(task.status)),
            ("Attempts", _esc(format_attempts(task))),
            ("Created", _esc(format_timestamp(task.created_at))),
            ("Started", _esc(format_timestamp(task.started_at))),
            ("Finished", _esc(format_timestamp(task.processed_at))),
            ("Duration", _esc(format_duration(task.duration) or "—")),
        ]
        if task.status == "queued" and task.run_after > time.time():
            rows.append(("Next attempt", _esc(format_timestamp(task.run_after))))
        table = "".join(
            f"<tr><td class='k'>{key}</td><td>{value}</td></tr>" for key, value in rows
        )
        parts = [f"<table cellspacing='0'>{table}</table>", _block("Data", pretty_json(task.data))]
        if task.result is not None:
            parts.append(_block("Result", pretty_json(task.result)))
        if task.error:
            title = "Error" if task.status == "failed" else "Error of the last attempt"
            error_color = readable_color(status_color("failed"), self.palette())
            parts.append(_block(title, task.error, error_color.name()))
        return "".join(parts)

    def _many(self, tasks: list[Task]) -> str:
        by_status = Counter(t.status for t in tasks)
        summary = ", ".join(
            f"{by_status[s]:,} {STATUS_LABELS[s].lower()}" for s in STATUSES if by_status[s]
        )
        listed = "".join(
            f"<tr><td><code>{_esc(short_id(t.id))}</code></td><td>{_esc(t.action)}</td>"
            f"<td>{self._badge(t.status)}</td></tr>"
            for t in tasks[:MAX_LISTED]
        )
        more = len(tasks) - MAX_LISTED
        tail = f"<p>… and {more:,} more</p>" if more > 0 else ""
        return (
            f"<h3>{len(tasks):,} tasks selected</h3><p>{_esc(summary)}</p>"
            f"<table cellspacing='0'>{listed}</table>{tail}"
        )
