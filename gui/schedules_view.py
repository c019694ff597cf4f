"""SchedulesDock: the schedules of the actions file, each with when it repeats, its next due
time, its last task and whether it is paused; Run now, Pause and Resume for the selected one.
The same as GET /schedules and POST /schedules/{name}/run|pause|resume.

Threads: GUI thread only. It reads the Scheduler's overview (a small read of the store) when
shown and on the window's 1 s refresh while visible; Run now is one commit.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.formatting import format_span, format_timestamp, short_id
from service.schedules import Scheduler, ScheduleStatus

HEADERS = ("Name", "Repeats", "Action", "Next due", "Last task", "State")
NAME_ROLE = Qt.ItemDataRole.UserRole + 1
NO_SCHEDULES = ("No schedules. Declare them as [schedules.<name>] tables in the actions file "
                "(--actions), e.g. cron = \"30 2 * * *\" or every = 3600.")


class SchedulesDock(QDockWidget):
    message = Signal(str)  # a short report for the status bar
    changed = Signal()  # a schedule ran: tasks changed

    def __init__(self, scheduler: Scheduler | None, parent: QWidget | None = None) -> None:
        super().__init__("Schedules", parent)
        self.setObjectName("schedules_dock")  # for saveState
        self._scheduler = scheduler
        self._statuses: list[ScheduleStatus] = []

        body = QWidget(self)
        self.table = QTableWidget(0, len(HEADERS), body)
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.empty_label = QLabel(NO_SCHEDULES, body)
        self.empty_label.setWordWrap(True)
        self.empty_label.setEnabled(False)

        self.run_button = QPushButton("Run now", body)
        self.run_button.setToolTip("Queue the selected schedule's task now (paused or not)")
        self.pause_button = QPushButton("Pause", body)
        self.resume_button = QPushButton("Resume", body)
        self.resume_button.setToolTip("Resume; a firing missed while paused runs once")
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.setWidget(body)

        self.run_button.clicked.connect(self.run_now)
        self.pause_button.clicked.connect(lambda: self._set_paused(True))
        self.resume_button.clicked.connect(lambda: self._set_paused(False))
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.visibilityChanged.connect(self._on_visibility)
        self.refresh()

    # -- reading ------------------------------------------------------------------------------

    def _on_visibility(self, visible: bool) -> None:
        if visible:
            self.refresh()

    def refresh(self) -> None:
        statuses = self._scheduler.overview() if self._scheduler is not None else []
        self._statuses = statuses
        self.empty_label.setVisible(not statuses)
        self.table.setVisible(bool(statuses))
        keep = self.selected_name()
        now = self._scheduler.clock() if self._scheduler is not None else 0.0
        self.table.setRowCount(len(statuses))
        for row, status in enumerate(statuses):
            for column, text in enumerate(self._texts(status, now)):
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                if item.text() != text:
                    item.setText(text)
                item.setData(NAME_ROLE, status.schedule.name)
            if status.schedule.name == keep:
                self.table.selectRow(row)
        self._update_buttons()

    @staticmethod
    def _texts(status: ScheduleStatus, now: float) -> list[str]:
        s = status.schedule
        if status.next_due is None:
            next_due = "—"
        else:
            when = format_timestamp(status.next_due)[:16]
            next_due = (f"{when} (in {format_span(status.next_due - now)})"
                        if status.next_due > now else f"{when} (now)")
        last = "—"
        if status.last_task_id is not None:
            state = status.last_task.status if status.last_task is not None else "deleted"
            last = f"{short_id(status.last_task_id)} {state}"
        return [s.name, s.when, s.action, next_due, last,
                "Paused" if status.paused else "Active"]

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else str(item.data(NAME_ROLE))

    def _selected_status(self) -> ScheduleStatus | None:
        name = self.selected_name()
        return next((s for s in self._statuses if s.schedule.name == name), None)

    # -- commands -----------------------------------------------------------------------------

    def run_now(self) -> None:
        name = self.selected_name()
        if name is None or self._scheduler is None:
            return
        try:
            task = self._scheduler.run_now(name)
        except Exception as exc:
            self.message.emit(f"could not run schedule {name}: {exc}")
            return
        self.message.emit(f"Schedule {name} queued task {short_id(task.id)}")
        self.refresh()
        self.changed.emit()

    def _set_paused(self, paused: bool) -> None:
        name = self.selected_name()
        if name is None or self._scheduler is None:
            return
        try:
            self._scheduler.set_paused(name, paused)
        except Exception as exc:
            self.message.emit(f"could not {'pause' if paused else 'resume'} {name}: {exc}")
            return
        self.message.emit(f"Schedule {name} {'paused' if paused else 'resumed'}")
        self.refresh()

    def _update_buttons(self) -> None:
        status = self._selected_status()
        self.run_button.setEnabled(status is not None)
        self.pause_button.setEnabled(status is not None and not status.paused)
        self.resume_button.setEnabled(status is not None and status.paused)
