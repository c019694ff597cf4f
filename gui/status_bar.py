"""StatusBarPanel: "⏸ Paused" while the queue is paused, what is wrong with the database, if
anything (a red "⚠ Database unavailable: …" shown while the problem lasts), plugins that failed
to load ("⚠ 1 plugin failed to load", the errors as tooltip), the API address (click to copy)
or why the API is not running, workers busy out of total, queue depth and throughput, as
permanent widgets of the window's QStatusBar. The bar's left part stays free for short reports
("Copied 1 id").

Threads: GUI thread only; the window calls ``update_stats`` from its timers and
``show_problem`` when gui/database_status.py reports a change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QFrame, QLabel, QStatusBar, QToolButton, QWidget

from gui.formatting import format_count
from gui.status_style import STATUS_COLORS, readable_color
from storage import TaskStatus

MESSAGE_MS = 4000
# The problem's text names the database file, so it can be long; the middle is elided (the
# headline and SQLite's cause at the end stay readable) and the tooltip has all of it.
PROBLEM_WIDTH = 520


def _on_bar(bar: QStatusBar, status: str) -> str:
    """A status colour that reads well on the bar (a dark palette needs a lighter red)."""
    return readable_color(STATUS_COLORS[status], bar.palette(), QPalette.ColorRole.Window).name()


def _separator(parent: QWidget) -> QFrame:
    line = QFrame(parent)
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class StatusBarPanel:
    def __init__(
        self,
        bar: QStatusBar,
        api_url: str | None,
        api_error: str | None,
        db_path: str = "",
        load_problems: Sequence[str] = (),
    ) -> None:
        self._bar = bar
        self.api_url = api_url
        # A normal (non-permanent) widget: it yields its place to short reports.
        self.db_label = QLabel(f"Database {db_path}" if db_path else "", bar)
        self.db_label.setToolTip("The database this window shows")
        self.db_label.setEnabled(False)
        bar.addWidget(self.db_label, 1)
        self.api_button: QToolButton | None = None
        self.api_label: QLabel | None = None
        if api_url is not None:
            self.api_button = QToolButton(bar)
            self.api_button.setAutoRaise(True)
            self.api_button.setText(f"API {api_url}")
            self.api_button.setToolTip("Click to copy the API address")
            self.api_button.setCursor(Qt.CursorShape.PointingHandCursor)
            self.api_button.clicked.connect(self.copy_api_url)
            api_widget: QWidget = self.api_button
        else:
            reason = api_error or "not started"
            self.api_label = QLabel(f"⚠ API unavailable: {reason}", bar)
            self.api_label.setToolTip(
                "The window works without the API; restart with another --port to use it"
            )
            self.api_label.setStyleSheet(f"color: {_on_bar(bar, 'cancelled')};")
            api_widget = self.api_label
        # Shown only while the queue is paused, first, in words: the one state in which
        # queued work does not move although nothing is wrong.
        self.paused_label = QLabel("⏸ Paused", bar)
        self.paused_label.setToolTip(
            "The queue is paused: running tasks finish, nothing new starts; submissions are "
            "still accepted. Resume it with the toolbar's Pause button (Ctrl+Shift+P).")
        self.paused_label.setStyleSheet(
            f"color: {STATUS_COLORS['cancelled'].name()}; font-weight: bold;")
        bar.addPermanentWidget(self.paused_label)
        self.paused_label.setVisible(False)
        # Permanent, unlike the reports on the left: it must not give way to "Copied 1 id".
        self.problem_label = QLabel(bar)
        self.problem_label.setStyleSheet(f"color: {_on_bar(bar, 'failed')};")
        self.problem_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem_label.hide()
        bar.addPermanentWidget(self.problem_label)
        # Known at start-up and for the whole run: Taskdesk runs without those plugins.
        self.plugins_label: QLabel | None = None
        if load_problems:
            n = len(load_problems)
            self.plugins_label = QLabel(
                f"⚠ {n} plugin{'' if n == 1 else 's'} failed to load", bar)
            self.plugins_label.setToolTip(
                "Taskdesk runs without their actions:\n" + "\n".join(load_problems))
            self.plugins_label.setStyleSheet(f"color: {STATUS_COLORS['cancelled'].name()};")
            bar.addPermanentWidget(self.plugins_label)
            bar.addPermanentWidget(_separator(bar))
        self.workers_label = QLabel(bar)
        self.queue_label = QLabel(bar)
        self.throughput_label = QLabel(bar)
        self.throughput_label.setToolTip("Tasks completed per second over the last 10 seconds")
        for i, widget in enumerate(
            (api_widget, self.workers_label, self.queue_label, self.throughput_label)
        ):
            if i:
                bar.addPermanentWidget(_separator(bar))
            bar.addPermanentWidget(widget)

    def copy_api_url(self) -> None:
        if self.api_url is None:
            return
        QGuiApplication.clipboard().setText(self.api_url)
        self.show_message(f"Copied {self.api_url}")

    def show_message(self, text: str) -> None:
        self._bar.showMessage(text, MESSAGE_MS)

    def show_problem(self, text: str | None) -> None:
        """Show what is wrong with the database (None: nothing, and the label goes away)."""
        label = self.problem_label
        if text is None:
            label.hide()
            label.clear()
            label.setToolTip("")
            return
        label.setText(label.fontMetrics().elidedText(
            text, Qt.TextElideMode.ElideMiddle, PROBLEM_WIDTH))
        label.setToolTip(text)
        label.show()

    def update_stats(
        self,
        counts: Mapping[TaskStatus, int],
        busy: int | None,
        workers: int | None,
        completed_per_second: float,
    ) -> None:
        if busy is None or workers is None:
            workers_text = "Workers: none"
        else:
            workers_text = f"Workers {busy}/{workers} busy"
        self._set(self.workers_label, workers_text)
        self._set(self.queue_label, f"Queued {format_count(counts.get(TaskStatus.QUEUED, 0))}")
        self._set(self.throughput_label, f"{completed_per_second:,.1f} completed/s")

    def set_paused(self, paused: bool) -> None:
        if self.paused_label.isVisibleTo(self._bar) != paused:
            self.paused_label.setVisible(paused)

    @property
    def paused_shown(self) -> bool:
        return self.paused_label.isVisibleTo(self._bar)

    @staticmethod
    def _set(label: QLabel, text: str) -> None:
        if label.text() != text:  # avoid relayouts of the bar once a second
            label.setText(text)
