"""TrayController: Taskdesk's system tray icon, where the desktop has a tray.

The icon shows the state at a glance (idle, working, paused, or a task failed since the
window was last looked at) and its tooltip the numbers; its menu shows the window, pauses or
resumes the queue, opens the preferences and quits. Closing the window while "close to tray"
is on hides it instead (main_window.py), and the API and workers go on; quitting from this
menu ends the event loop, and main.py shuts down as it does when the window closes.

Where there is no tray (``QSystemTrayIcon.isSystemTrayAvailable()`` is false, as on the
offscreen platform and some Wayland desktops) the controller has no icon: every method still
works, closing the window quits, and notifications go to the status bar.

Testable without a desktop: the icon is made by a factory (``system_tray_icon`` by default) and
used only through the few methods of ``TrayIcon``, which a fake can provide.

Threads: GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QFont, QGuiApplication, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

import resources
from gui.database_status import DatabaseStatus, Failed
from gui.notifications import NoticeKind
from gui.preferences import Preferences
from service.task_service import TaskService
from storage import TaskStatus

ICON_PATH = Path(resources.__file__).with_name("taskdesk.svg")
REFRESH_MS = 1000
MESSAGE_MS = 10_000
TOLD_KEY = "desktop/told_running_in_tray"


class TrayState(StrEnum):
    IDLE = "idle"
    WORKING = "working"
    PAUSED = "paused"
    FAILED = "failed"


def tray_state(running: int, queued: int, paused: bool, failed_unseen: int) -> TrayState:
    if failed_unseen:
        return TrayState.FAILED
    if paused:
        return TrayState.PAUSED
    return TrayState.WORKING if running or queued else TrayState.IDLE


def describe_state(state: TrayState, running: int, queued: int, failed_unseen: int) -> str:
    """The tooltip's and the menu's first line."""
    numbers = f"{running:,} running, {queued:,} queued"
    match state:
        case TrayState.FAILED:
            what = "1 task failed" if failed_unseen == 1 else f"{failed_unseen:,} tasks failed"
            return f"{what} · {numbers}"
        case TrayState.PAUSED:
            return f"Paused · {numbers}"
        case TrayState.WORKING:
            return f"Working · {numbers}"
        case _:
            return "Idle: nothing queued"


class TrayIcon(Protocol):
    """What the controller uses of a QSystemTrayIcon."""

    @property
    def activated(self) -> Any: ...  # a signal of QSystemTrayIcon.ActivationReason

    def setIcon(self, icon: QIcon) -> None: ...
    def setToolTip(self, tip: str) -> None: ...
    def setContextMenu(self, menu: QMenu) -> None: ...
    def show(self) -> None: ...
    def hide(self) -> None: ...
    def isVisible(self) -> bool: ...
    def supportsMessages(self) -> bool: ...
    def showMessage(self, title: str, msg: str, icon: QSystemTrayIcon.MessageIcon,
                    msecs: int = 10000) -> None: ...


TrayIconFactory = Callable[[QObject], "TrayIcon | None"]


def system_tray_icon(parent: QObject) -> TrayIcon | None:
    """Qt's tray icon where the desktop has a tray; None where it has none."""
    if not QSystemTrayIcon.isSystemTrayAvailable():
        return None
    return QSystemTrayIcon(parent)


def no_tray_icon(parent: QObject) -> TrayIcon | None:
    return None


_BADGES = {  # the circle drawn over the icon's corner, and its mark
    TrayState.WORKING: "#2563eb",
    TrayState.PAUSED: "#6b7280",
    TrayState.FAILED: "#dc2626",
}


def state_icon(state: TrayState, size: int = 64) -> QIcon:
    """The app icon; for any state but idle its corner badge (a green tick) is replaced by a
    circle saying the state: blue with dots (working), grey with bars (paused), red with an
    exclamation mark (failed)."""
    base = QIcon(str(ICON_PATH)).pixmap(size, size)
    if state is TrayState.IDLE:
        return QIcon(base)
    pixmap = QPixmap(base)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    unit = size / 64  # the SVG's coordinates
    # Larger than the tick it covers: a tray shows the icon at 16 to 24 pixels.
    centre, radius = QPointF(48 * unit, 46 * unit), 14 * unit
    painter.setPen(QPen(QColor("white"), 3 * unit))
    painter.setBrush(QColor(_BADGES[state]))
    painter.drawEllipse(centre, radius, radius)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("white"))
    if state is TrayState.WORKING:
        for dot in (-5.0, 0.0, 5.0):
            painter.drawEllipse(centre + QPointF(dot * unit, 0), 1.8 * unit, 1.8 * unit)
    elif state is TrayState.PAUSED:
        for bar in (-3.5, 1.5):
            painter.drawRect(QRectF(centre.x() + bar * unit, centre.y() - 5 * unit,
                                    2 * unit, 10 * unit))
    else:
        painter.drawRect(QRectF(centre.x() - 1.2 * unit, centre.y() - 7 * unit,
                                2.4 * unit, 9 * unit))
        painter.drawEllipse(centre + QPointF(0, 5 * unit), 1.5 * unit, 1.5 * unit)
    painter.end()
    return QIcon(pixmap)


class TraySink:
    """Notifications through the tray icon (see notifications.py for where Qt sends them)."""

    def __init__(self, icon: TrayIcon) -> None:
        self._icon = icon

    def notify(self, kind: NoticeKind, title: str, text: str) -> None:
        severity = (QSystemTrayIcon.MessageIcon.Information if kind is NoticeKind.FINISHED
                    else QSystemTrayIcon.MessageIcon.Warning)
        self._icon.showMessage(title, text, severity, MESSAGE_MS)


class TrayController(QObject):
    def __init__(
        self,
        window: QWidget,
        service: TaskService,
        database: DatabaseStatus,
        preferences: Preferences,
        *,
        icon_factory: TrayIconFactory = system_tray_icon,
        open_preferences: Callable[[], None],
        quit_app: Callable[[], None],
    ) -> None:
        super().__init__(window)
        self.window = window
        self.service = service
        self.database = database
        self.preferences = preferences
        self._failed_unseen = 0
        self.state = TrayState.IDLE
        self._icons: dict[TrayState, QIcon] = {}

        # No parent: a tray menu is a top-level popup (the icon does not own it either).
        self.menu = QMenu()
        self.status_action = self.menu.addAction("Taskdesk")
        self.status_action.setEnabled(False)
        self.menu.addSeparator()
        self.show_action = self.menu.addAction("&Show Taskdesk")
        bold = QFont(self.show_action.font())
        bold.setBold(True)
        self.show_action.setFont(bold)  # what a click on the icon does
        self.show_action.triggered.connect(self.show_window)
        self.pause_action = QAction("&Pause queue", self.menu)
        self.pause_action.setCheckable(True)
        self.pause_action.setToolTip("Running tasks finish; nothing new starts; submissions "
                                     "are still accepted")
        self.pause_action.triggered.connect(self.set_paused)
        self.menu.addAction(self.pause_action)
        self.menu.addSeparator()
        self.preferences_action = self.menu.addAction("P&references…")
        self.preferences_action.triggered.connect(open_preferences)
        self.quit_action = self.menu.addAction("&Quit Taskdesk")
        self.quit_action.triggered.connect(quit_app)
        self.menu.aboutToShow.connect(self.refresh)

        self.icon = icon_factory(self)
        if self.icon is not None:
            self.icon.setContextMenu(self.menu)
            self.icon.activated.connect(self._on_activated)
            self.icon.setIcon(self.icon_for(self.state))
            self.icon.show()
        window.installEventFilter(self)  # to see the window activated: failures were seen
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.apply_preferences()
        # Not now: the window connects to the database guard's signals after making its parts,
        # and a read made now would report a problem before anyone listens.
        QTimer.singleShot(0, self.refresh)

    # -- what the window asks -------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.icon is not None and self.icon.isVisible()

    @property
    def keeps_running_when_closed(self) -> bool:
        return self.available and self.preferences.close_to_tray

    def apply_preferences(self) -> None:
        # Closing the window must not end the event loop while Taskdesk lives on in the tray,
        # nor closing a dialog opened from the tray while the window is hidden.
        QGuiApplication.setQuitOnLastWindowClosed(not self.keeps_running_when_closed)

    def sink(self) -> TraySink | None:
        if self.icon is None or not self.icon.supportsMessages():
            return None
        return TraySink(self.icon)

    def hidden_to_tray(self, settings: QSettings) -> None:
        """The window was closed into the tray: say so, the first time ever."""
        if self.icon is None or settings.value(TOLD_KEY) in (True, "true"):
            return
        settings.setValue(TOLD_KEY, True)
        if self.icon.supportsMessages():
            self.icon.showMessage(
                "Taskdesk is still running",
                "The API and the workers go on. Quit from this icon's menu; Preferences "
                "turns this off.", QSystemTrayIcon.MessageIcon.Information, MESSAGE_MS)

    def note_failures(self, count: int) -> None:
        """*count* tasks failed for good; shown until the window is looked at."""
        if self.window.isVisible() and self.window.isActiveWindow():
            return  # seen as it happens
        self._failed_unseen += count
        self.refresh()

    def shutdown(self) -> None:
        self._timer.stop()
        if self.icon is not None:
            self.icon.hide()
        QGuiApplication.setQuitOnLastWindowClosed(True)
        self.menu.deleteLater()

    # -- actions --------------------------------------------------------------------------------

    def show_window(self) -> None:
        window = self.window
        if window.isMinimized():
            window.showNormal()
        else:
            window.show()
        window.raise_()
        window.activateWindow()
        self._seen()

    def set_paused(self, paused: bool) -> None:
        what = "pause the queue" if paused else "resume the queue"
        self.database.run(what, lambda: self.service.set_paused(paused))
        self.refresh()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.show_window()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.WindowActivate:
            self._seen()
        return False

    def _seen(self) -> None:
        if self._failed_unseen:
            self._failed_unseen = 0
            self.refresh()

    # -- showing the state ----------------------------------------------------------------------

    def icon_for(self, state: TrayState) -> QIcon:
        if state not in self._icons:
            self._icons[state] = state_icon(state)
        return self._icons[state]

    def refresh(self) -> None:
        # One guarded call: a success right after a failure would clear the failure shown.
        state = self.database.call("read the queue's state",
                                   lambda: (self.service.counts(), self.service.paused()))
        if isinstance(state, Failed):
            return  # the status bar says why; shown as it was until the next tick
        counts, paused = state
        running, queued = counts[TaskStatus.RUNNING], counts[TaskStatus.QUEUED]
        self.state = tray_state(running, queued, paused, self._failed_unseen)
        text = describe_state(self.state, running, queued, self._failed_unseen)
        self.status_action.setText(text)
        self.pause_action.setChecked(paused)
        if self.icon is not None:
            self.icon.setIcon(self.icon_for(self.state))
            self.icon.setToolTip(f"Taskdesk — {text}")
