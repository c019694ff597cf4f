"""DetailsPanel: everything about the selected task, and buttons for what can be done to it.

Shows the task's fields and every timestamp in local time, its data, result and error
pretty-printed, in one read-only, selectable text view; for several selected tasks, a summary.
For one task, below that: while it runs, a progress bar with the message the task last gave;
and its log, followed live while it runs (gui/log_follower.py). The buttons are the shared
QActions of gui/task_actions.py.

A running task may report progress many times a second; that moves the bar and the message
only, and the text view is rebuilt only when something it shows changes, so the user's scroll
position and selection in it survive.

Threads: GUI thread only; the window passes in tasks it already read, and the log is read
through the window's DatabaseStatus.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections import Counter
from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.database_status import DatabaseStatus
from gui.formatting import (
    format_attempts,
    format_duration,
    format_timestamp,
    pretty_json,
    short_id,
)
from gui.log_follower import LogFollower
from gui.log_view import LogView
from gui.status_style import (
    CANCELLING,
    CANCELLING_LABEL,
    STATUS_COLORS,
    STATUS_LABELS,
    badge_colors,
    badge_of,
    readable_color,
    shown_progress,
    status_color,
)
from service.task_service import TaskService
from storage import STATUSES, Task, TaskStatus

PROGRESS_STEPS = 1000  # the bar's range: tenths of a percent

MAX_LISTED = 12  # ids listed for a multiple selection
MAX_SHOWN_CHARS = 200_000  # data and results can be 1 MiB; keep the view quick


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _block(title: str, body: str, color: str | None = None) -> str:
    if len(body) > MAX_SHOWN_CHARS:
        body = body[:MAX_SHOWN_CHARS] + "\n… (cut; copy the task as curl or use the API for all)"
    style = f' style="color:{color}"' if color else ""
    return f"<h4>{_esc(title)}</h4><pre{style}>{_esc(body)}</pre>"


def _as_shown(tasks: Sequence[Task]) -> list[Task]:
    """The tasks as the text view shows them: without their progress, which has widgets of
    its own, so that a task reporting progress does not rebuild the view every time."""
    if len(tasks) != 1:
        return list(tasks)
    return [dataclasses.replace(tasks[0], progress=None, progress_message=None)]


class DetailsPanel(QWidget):
    def __init__(
        self,
        actions: Sequence[QAction],
        service: TaskService,
        database: DatabaseStatus,
        parent: QWidget | None = None,
    ) -> None:
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

        self.progress_box = QWidget(self)
        self.progress_bar = QProgressBar(self.progress_box)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setFormat("%p %")
        self.progress_message = QLabel(self.progress_box)
        self.progress_message.setWordWrap(True)
        self.progress_message.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        progress = QVBoxLayout(self.progress_box)
        progress.setContentsMargins(0, 0, 0, 0)
        progress.setSpacing(2)
        progress.addWidget(self.progress_bar)
        progress.addWidget(self.progress_message)
        self.progress_box.hide()

        self.log_box = QWidget(self)
        self.log_title = QLabel("Log", self.log_box)
        self.log_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.log_view = LogView(self.log_box)
        self.log_view.setPlaceholderText("No output")
        self.log_title.setBuddy(self.log_view)
        log_layout = QVBoxLayout(self.log_box)
        log_layout.setContentsMargins(0, 4, 0, 0)
        log_layout.setSpacing(2)
        log_layout.addWidget(self.log_title)
        log_layout.addWidget(self.log_view, 1)
        self.log_box.hide()
        self.follower = LogFollower(service, database, self.log_view, self)
        self.follower.read.connect(self._update_log_title)
        self.follower.problem_changed.connect(self._update_log_title)

        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.log_box)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([220, 220])

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.progress_box)
        layout.addWidget(self.splitter, 1)
        self._shown: list[Task] = []
        self._as_shown: list[Task] = []
        self._update_log_title()
        self.show_tasks([])

    @property
    def shown(self) -> list[Task]:
        return list(self._shown)

    def stop(self) -> None:
        """Stop following a log (the window is closing)."""
        self.follower.stop()

    def show_tasks(self, tasks: Sequence[Task]) -> None:
        tasks = list(tasks)
        one = tasks[0] if len(tasks) == 1 else None
        self._show_progress(one)
        self.log_box.setVisible(one is not None)
        self.follower.follow(one)
        as_shown = _as_shown(tasks)
        self._shown = tasks
        if as_shown == self._as_shown and self.view.toPlainText():
            return  # unchanged: keep the user's scroll position and text selection
        self._as_shown = as_shown
        if not tasks:
            self.view.setHtml(
                "<p style='color:gray'>Select a task to see its data, result and timings."
                "<br><br>Ctrl+Enter submits a task, Ctrl+F searches.</p>"
            )
        elif len(tasks) == 1:
            self.view.setHtml(self._one(tasks[0]))
        else:
            self.view.setHtml(self._many(tasks))

    def _show_progress(self, task: Task | None) -> None:
        """The bar and message of a running task; hidden for anything else."""
        running = task is not None and task.status == TaskStatus.RUNNING
        self.progress_box.setVisible(running)
        if task is None or not running:
            return
        fraction = shown_progress(task)
        if fraction is None:  # running, but it has not said how far: a busy bar
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, PROGRESS_STEPS)
            self.progress_bar.setValue(round(fraction * PROGRESS_STEPS))
        if task.cancel_requested:
            message = "Asked to stop: it ends cancelled when its attempt ends"
        else:
            message = task.progress_message or ""
        self.progress_message.setText(message)
        self.progress_message.setHidden(not message)

    def _update_log_title(self) -> None:
        problem = self.follower.problem
        if problem is not None:
            color = STATUS_COLORS["failed"].name()
            self.log_title.setText(f"<b>Log</b> <span style='color:{color}'>"
                                   f"{_esc(problem)}</span>")
        elif self.log_view.trimmed:
            self.log_title.setText("<b>Log</b> (earlier lines not shown)")
        else:
            self.log_title.setText("<b>Log</b>")
        self.log_title.setToolTip(problem or "")

    def _badge(self, status: str) -> str:
        fill, text = badge_colors(status, self.palette())
        label = CANCELLING_LABEL if status == CANCELLING else STATUS_LABELS.get(status, status)
        return (
            f"<span style='background-color:{fill.name()}; color:{text.name()};'>"
            f"&nbsp;{_esc(label)}&nbsp;</span>"
        )

    def _one(self, task: Task) -> str:
        rows = [
            ("ID", f"<code>{_esc(task.id)}</code>"),
            ("Action", f"<b>{_esc(task.action)}</b>"),
            ("Status", self._badge(badge_of(task))),
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
            f"<td>{self._badge(badge_of(t))}</td></tr>"
            for t in tasks[:MAX_LISTED]
        )
        more = len(tasks) - MAX_LISTED
        tail = f"<p>… and {more:,} more</p>" if more > 0 else ""
        return (
            f"<h3>{len(tasks):,} tasks selected</h3><p>{_esc(summary)}</p>"
            f"<table cellspacing='0'>{listed}</table>{tail}"
        )
