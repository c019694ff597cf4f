"""WhenOptions: when and in what order a task being composed runs: at once, at a time or after
a delay; its priority; the tasks it waits for (picked from the table).

It folds into one line, a button that says what is chosen ("When and order: in 5 min,
priority 10, after 2 tasks"), so the compose panel stays as small as before until someone
needs it; a click unfolds the controls.

``options()`` is the keyword arguments of ``TaskService.accept``/``submit_many`` (priority,
delay or run_at, after), so the window submits exactly what the API would; the service
checks them (a time in the past, a priority out of range) and the compose panel shows its
refusal.

Threads: GUI thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QFormLayout,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.formatting import short_id
from service.scheduling import MAX_AFTER, MAX_AHEAD_SECONDS, MAX_PRIORITY, MIN_PRIORITY
from storage import Task

AT_ONCE, AT_TIME, AFTER_DELAY = "At once", "At a time", "After a delay"
# Units of the delay, in seconds.
UNITS: dict[str, int] = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86_400}
ID_ROLE = Qt.ItemDataRole.UserRole + 1


class WhenOptions(QWidget):
    changed = Signal()
    # The user asked to add the tasks selected in the table; the window answers with
    # add_tasks() (this widget does not know the table).
    add_selected_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self._clock = clock

        self.start_combo = QComboBox(self)
        self.start_combo.addItems([AT_ONCE, AT_TIME, AFTER_DELAY])
        self.start_combo.setToolTip("When the task may start (it waits in the queue until then)")

        self.run_at_edit = QDateTimeEdit(self)
        self.run_at_edit.setCalendarPopup(True)
        self.run_at_edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.run_at_edit.setToolTip("Not before this local date and time")
        self.delay_spin = QSpinBox(self)
        self.delay_spin.setRange(1, MAX_AHEAD_SECONDS)
        self.delay_spin.setValue(5)
        self.delay_unit = QComboBox(self)
        self.delay_unit.addItems(list(UNITS))
        self.delay_unit.setCurrentText("minutes")
        delay_row = QWidget(self)
        delay_layout = QHBoxLayout(delay_row)
        delay_layout.setContentsMargins(0, 0, 0, 0)
        delay_layout.addWidget(self.delay_spin, 1)
        delay_layout.addWidget(self.delay_unit)
        self._when_pages = QStackedWidget(self)
        self._blank = QWidget(self)
        for page in (self._blank, self.run_at_edit, delay_row):
            self._when_pages.addWidget(page)
        self._pages = {AT_ONCE: self._blank, AT_TIME: self.run_at_edit,
                       AFTER_DELAY: delay_row}
        start_row = QHBoxLayout()
        start_row.addWidget(self.start_combo)
        start_row.addWidget(self._when_pages, 1)

        self.priority_spin = QSpinBox(self)
        self.priority_spin.setRange(MIN_PRIORITY, MAX_PRIORITY)
        self.priority_spin.setToolTip(
            f"{MIN_PRIORITY} to {MAX_PRIORITY}: higher runs first; equal priorities run "
            "oldest first")

        self.after_list = QListWidget(self)
        self.after_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.after_list.setToolTip(
            "Runs only once all of these tasks have completed; if one fails or is cancelled, "
            "this task is cancelled")
        self.after_list.setMaximumHeight(70)
        self.add_button = QPushButton("Add selected", self)
        self.add_button.setToolTip("Add the tasks selected in the table")
        self.add_button.clicked.connect(self.add_selected_requested)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button, 1)
        buttons.addWidget(self.remove_button)
        after = QVBoxLayout()
        after.setContentsMargins(0, 0, 0, 0)
        after.addWidget(self.after_list)
        after.addLayout(buttons)

        self.toggle = QToolButton(self)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.toggle.toggled.connect(self.set_expanded)
        self.body = QWidget(self)
        form = QFormLayout(self.body)
        form.setContentsMargins(18, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("&Start", start_row)
        form.addRow("&Priority", self.priority_spin)
        form.addRow("Aft&er", after)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addWidget(self.toggle)
        outer.addWidget(self.body)
        self.body.hide()
        self.changed.connect(self._update_summary)

        self.start_combo.currentTextChanged.connect(self._on_start_changed)
        for signal in (self.run_at_edit.dateTimeChanged, self.delay_spin.valueChanged,
                       self.delay_unit.currentTextChanged, self.priority_spin.valueChanged):
            signal.connect(self.changed)
        self.after_list.itemSelectionChanged.connect(self._update_buttons)
        self._on_start_changed(self.start_combo.currentText())
        self._update_buttons()
        self._update_summary()

    # -- what would be submitted ---------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``TaskService.accept``/``submit_many``."""
        chosen: dict[str, Any] = {"priority": self.priority_spin.value()}
        start = self.start_combo.currentText()
        if start == AT_TIME:
            chosen["run_at"] = float(self.run_at_edit.dateTime().toSecsSinceEpoch())
        elif start == AFTER_DELAY:
            chosen["delay"] = self.delay_spin.value() * UNITS[self.delay_unit.currentText()]
        ids = self.after_ids()
        if ids:
            chosen["after"] = ids
        return chosen

    def after_ids(self) -> list[str]:
        items = (self.after_list.item(i) for i in range(self.after_list.count()))
        return [str(item.data(ID_ROLE)) for item in items if item is not None]

    # -- the tasks to wait for ----------------------------------------------------------------

    def add_tasks(self, tasks: Sequence[Task]) -> int:
        """Add these tasks to wait for (each once, up to the API's limit); how many were
        added."""
        present = set(self.after_ids())
        added = 0
        for task in tasks:
            if task.id in present or len(present) >= MAX_AFTER:
                continue
            item = QListWidgetItem(f"{short_id(task.id)}  {task.action}  ({task.status})")
            item.setData(ID_ROLE, task.id)
            item.setToolTip(task.id)
            self.after_list.addItem(item)
            present.add(task.id)
            added += 1
        if added:
            self._update_buttons()
            self.changed.emit()
        return added

    def remove_selected(self) -> None:
        for item in self.after_list.selectedItems():
            self.after_list.takeItem(self.after_list.row(item))
        self._update_buttons()
        self.changed.emit()

    def clear_after(self) -> None:
        self.after_list.clear()
        self._update_buttons()
        self.changed.emit()

    # -- folding ------------------------------------------------------------------------------

    @property
    def expanded(self) -> bool:
        return self.body.isVisibleTo(self)

    def set_expanded(self, expanded: bool) -> None:
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)  # comes back here through toggled
            return
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)

    def summary(self) -> str:
        """What is chosen, in words: 'at once, priority 0' unless changed."""
        start = self.start_combo.currentText()
        if start == AT_TIME:
            when = "at " + self.run_at_edit.dateTime().toString("yyyy-MM-dd HH:mm")
        elif start == AFTER_DELAY:
            unit = self.delay_unit.currentText()
            n = self.delay_spin.value()
            when = f"in {n} {unit[:-1] if n == 1 else unit}"
        else:
            when = "at once"
        parts = [when, f"priority {self.priority_spin.value()}"]
        waits = len(self.after_ids())
        if waits:
            parts.append(f"after {waits} task{'' if waits == 1 else 's'}")
        return ", ".join(parts)

    def _update_summary(self) -> None:
        text = f"When and order: {self.summary()}"
        self.toggle.setText(text)
        self.toggle.setToolTip(text + " (click to change)")

    # -- internals ----------------------------------------------------------------------------

    def _on_start_changed(self, start: str) -> None:
        self._when_pages.setCurrentWidget(self._pages.get(start, self._blank))
        if start == AT_TIME:
            # An hour from now, to the minute: a time in the future to change from.
            later = int(self._clock() // 60 * 60 + 3600)
            self.run_at_edit.setDateTime(QDateTime.fromSecsSinceEpoch(later))
        self.changed.emit()

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.after_list.selectedItems()))
