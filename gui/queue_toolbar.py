"""QueueToolbar: the window's toolbar for the queue as a whole: Pause/Resume (a checkable
action, Ctrl+Shift+P) and the Schedules view's toggle.

Pausing is stored (it survives a restart and holds for every instance sharing the database),
so the window shows what the store says: ``sync()`` sets the button from it on every refresh,
whoever paused (the window, the API, another instance), without pausing anything itself.

Threads: GUI thread only; ``service.set_paused`` is one small write.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QStyle, QToolBar, QWidget

from service.task_service import TaskService

PAUSE_TEXT, PAUSED_TEXT = "Pause queue", "Paused — click to resume"


class QueueToolbar(QToolBar):
    paused_changed = Signal(bool)  # the user paused or resumed; the state is stored
    message = Signal(str)  # a short report for the status bar

    def __init__(self, service: TaskService, parent: QWidget | None = None) -> None:
        super().__init__("Queue", parent)
        self.setObjectName("queue_toolbar")  # for saveState
        self._service = service
        # The style's own pause icon: an emoji would depend on the fonts installed.
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause)
        self.pause_action = QAction(icon, PAUSE_TEXT, self)
        self.pause_action.setCheckable(True)
        self.pause_action.setShortcut(QKeySequence("Ctrl+Shift+P"))
        tip = ("Pause the queue: running tasks finish, nothing new starts, submissions are "
               "still accepted; kept across restarts (Ctrl+Shift+P)")
        self.pause_action.setToolTip(tip)
        self.pause_action.setStatusTip(tip)
        # triggered, not toggled: only the user's click pauses; sync() only shows.
        self.pause_action.triggered.connect(self._on_triggered)
        self.addAction(self.pause_action)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

    @property
    def paused(self) -> bool:
        return self.pause_action.isChecked()

    def sync(self, paused: bool) -> None:
        """Show the stored state."""
        if self.pause_action.isChecked() != paused:
            self.pause_action.setChecked(paused)
        text = PAUSED_TEXT if paused else PAUSE_TEXT
        if self.pause_action.text() != text:
            self.pause_action.setText(text)

    def _on_triggered(self, checked: bool) -> None:
        try:
            self._service.set_paused(checked)
        except Exception as exc:  # e.g. the database is locked: say so, show what is stored
            self.message.emit(f"could not {'pause' if checked else 'resume'} the queue: {exc}")
            self.sync(not checked)
            return
        self.sync(checked)
        self.message.emit("Queue paused: running tasks finish, nothing new starts" if checked
                          else "Queue resumed")
        self.paused_changed.emit(checked)
