"""FilterBar: the status filter (a segmented row of toggle buttons with live counts), the
"Scheduled" toggle (only queued tasks not due yet) and the debounced search box above the
table.

Threads: GUI thread only; counts are pushed in by the window's refresh.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from gui.formatting import format_count
from gui.status_style import STATUS_LABELS, status_dot_icon
from storage import STATUSES, TaskStatus

SEARCH_DEBOUNCE_MS = 250

# Keys of the buttons: None is "All".
FILTERS: tuple[TaskStatus | None, ...] = (None, *STATUSES)

_SEGMENT_STYLE = """
QPushButton {
    border: 1px solid palette(mid);
    border-left-width: 0px;
    border-radius: 0px;
    padding: 4px 9px;
    background: palette(button);
}
QPushButton[segment="first"] {
    border-left-width: 1px;
    border-top-left-radius: 5px;
    border-bottom-left-radius: 5px;
}
QPushButton[segment="last"] {
    border-top-right-radius: 5px;
    border-bottom-right-radius: 5px;
}
QPushButton:checked {
    background: palette(highlight);
    color: palette(highlighted-text);
    border-color: palette(highlight);
}
QPushButton:focus { text-decoration: underline; }
"""


class FilterBar(QWidget):
    status_changed = Signal(object)  # TaskStatus | None
    search_changed = Signal(str)
    scheduled_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self._buttons: dict[TaskStatus | None, QPushButton] = {}
        self._counts: dict[TaskStatus | None, int] = dict.fromkeys(FILTERS, 0)

        segments = QWidget(self)
        segments.setStyleSheet(_SEGMENT_STYLE)
        seg_layout = QHBoxLayout(segments)
        seg_layout.setContentsMargins(0, 0, 0, 0)
        seg_layout.setSpacing(0)
        for i, key in enumerate(FILTERS):
            button = QPushButton(segments)
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setProperty(
                "segment", "first" if i == 0 else "last" if i == len(FILTERS) - 1 else "middle"
            )
            if key is not None:
                button.setIcon(status_dot_icon(key))
            button.setToolTip(f"Show {'all' if key is None else key} tasks")
            self._group.addButton(button, i)
            self._buttons[key] = button
            seg_layout.addWidget(button)
        self._buttons[None].setChecked(True)
        self._group.buttonClicked.connect(self._on_button)

        # Apart from the statuses, and combined with them: scheduled tasks are queued ones
        # whose time has not come. No count: it would change with the clock alone.
        self.scheduled_button = QPushButton("Scheduled", self)
        self.scheduled_button.setCheckable(True)
        self.scheduled_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.scheduled_button.setToolTip(
            "Show only queued tasks not due yet: delayed, run at a later time, or waiting to "
            "retry")
        self.scheduled_button.toggled.connect(self.scheduled_changed)

        self.search_edit = QLineEdit(self)
        self.search_edit.setPlaceholderText("Search by id prefix or action   (Ctrl+F)")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setMinimumWidth(80)  # leaves room for the Scheduled toggle
        self.search_edit.setMaximumWidth(360)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SEARCH_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._emit_search)
        self.search_edit.textChanged.connect(self._debounce.start)
        # Enter searches at once instead of waiting for the debounce.
        self.search_edit.returnPressed.connect(self._emit_search)
        self._last_search = ""

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(segments)
        layout.addWidget(self.scheduled_button)
        layout.addStretch(1)
        layout.addWidget(self.search_edit, 2)  # grows up to its maximum before the gap does
        self._update_labels()

    # -- state ----------------------------------------------------------------------------------

    @property
    def status(self) -> TaskStatus | None:
        for key, button in self._buttons.items():
            if button.isChecked():
                return key
        return None

    def set_status(self, status: TaskStatus | None) -> None:
        """Select a filter without emitting (the caller applies it)."""
        self._buttons.get(status, self._buttons[None]).setChecked(True)

    @property
    def search(self) -> str:
        return self._last_search

    @property
    def scheduled(self) -> bool:
        return self.scheduled_button.isChecked()

    def set_scheduled(self, on: bool) -> None:
        """Set the Scheduled toggle without emitting (the caller applies it)."""
        blocked = self.scheduled_button.blockSignals(True)
        self.scheduled_button.setChecked(on)
        self.scheduled_button.blockSignals(blocked)

    def button(self, status: TaskStatus | None) -> QPushButton:
        return self._buttons[status]

    def buttons(self) -> list[QPushButton]:
        return list(self._buttons.values())

    def set_counts(self, counts: Mapping[TaskStatus, int]) -> None:
        self._counts = {key: counts.get(key, 0) for key in STATUSES}
        self._counts[None] = sum(counts.get(key, 0) for key in STATUSES)
        self._update_labels()

    def count_text(self, status: TaskStatus | None) -> str:
        return self._buttons[status].text()

    # -- internals ------------------------------------------------------------------------------

    def _update_labels(self) -> None:
        for key, button in self._buttons.items():
            name = "All" if key is None else STATUS_LABELS[key]
            text = f"{name}  {format_count(self._counts.get(key, 0))}"
            if button.text() != text:
                button.setText(text)

    def _on_button(self, button: QAbstractButton) -> None:
        for key, candidate in self._buttons.items():
            if candidate is button:
                self.status_changed.emit(key)
                return

    def _emit_search(self) -> None:
        self._debounce.stop()
        text = self.search_edit.text().strip()
        if text != self._last_search:
            self._last_search = text
            self.search_changed.emit(text)
