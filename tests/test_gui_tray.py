# pytest-qt's QtBot helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""The tray icon and closing to it (gui/tray.py, the hooks in gui/main_window.py), with a fake
tray icon standing in for the desktop's (the offscreen platform has no tray), and without one:
a desktop without a tray must work as before and never error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, QSettings, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon
from pytestqt.qtbot import QtBot

from gui.main_window import AppInfo, MainWindow
from gui.notifications import NoticeKind, StatusBarSink
from gui.preferences import Preferences
from gui.preferences_dialog import PreferencesDialog
from gui.tray import TrayIcon, TrayState, no_tray_icon, state_icon, tray_state
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import TaskStatus
from tests.action_helpers import python_action
from tests.conftest import Client

WAIT_MS = 10_000
# Showing the window from the tray raises it, which the offscreen platform cannot do.
pytestmark = pytest.mark.qt_log_ignore("does not support raise")


class FakeTrayIcon(QObject):
    """What a desktop's tray icon does, recorded."""

    activated = Signal(object)

    def __init__(self, parent: QObject | None = None, messages: bool = True) -> None:
        super().__init__(parent)
        self.visible = False
        self.icon: QIcon | None = None
        self.tooltip = ""
        self.menu: QMenu | None = None
        self.messages: list[tuple[str, str, QSystemTrayIcon.MessageIcon]] = []
        self._supports_messages = messages

    def setIcon(self, icon: QIcon) -> None:
        self.icon = icon

    def setToolTip(self, tip: str) -> None:
        self.tooltip = tip

    def setContextMenu(self, menu: QMenu) -> None:
        self.menu = menu

    def show(self) -> None:
        self.visible = True

    def hide(self) -> None:
        self.visible = False

    def isVisible(self) -> bool:
        return self.visible

    def supportsMessages(self) -> bool:
        return self._supports_messages

    def showMessage(self, title: str, msg: str, icon: QSystemTrayIcon.MessageIcon,
                    msecs: int = 10000) -> None:
        self.messages.append((title, msg, icon))


class SpontaneousClose(QCloseEvent):
    """The close event of the window's own close button (Qt marks it spontaneous; a test
    cannot send one through Qt, so it is given to closeEvent directly)."""

    def spontaneous(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[None]:
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    yield
    QSettings.setDefaultFormat(QSettings.Format.NativeFormat)


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)


Make = Callable[..., tuple[MainWindow, FakeTrayIcon | None]]


@pytest.fixture
def make_window(qtbot: QtBot, service: TaskService, settings: QSettings,
                db_path: Path) -> Iterator[Make]:
    windows: list[MainWindow] = []

    def make(tray: bool = True, pool: WorkerPool | None = None, api_url: str | None = None,
             messages: bool = True) -> tuple[MainWindow, FakeTrayIcon | None]:
        icons: list[FakeTrayIcon] = []

        def factory(parent: QObject) -> TrayIcon | None:
            icon = FakeTrayIcon(parent, messages)
            icons.append(icon)
            return icon

        window = MainWindow(service, pool, AppInfo("9.9.9", db_path, api_url, None, None),
                            settings=settings, tray_icon=factory if tray else no_tray_icon)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window, (icons[0] if icons else None)

    yield make
    for window in windows:
        window.shutdown()
    assert QGuiApplication.quitOnLastWindowClosed()  # shutdown() gave it back


def register_failing(service: TaskService) -> None:
    def boom(data: dict[str, Any]) -> Any:
        raise ValueError("no good")

    service.registry.register(python_action("explode", boom, lambda d: None, "always fails"))


def action_texts(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


# -- the tray menu ------------------------------------------------------------------------------


def test_the_tray_menu_shows_the_window_pauses_and_opens_preferences(
    qtbot: QtBot, make_window: Make, service: TaskService
) -> None:
    window, icon = make_window()
    assert icon is not None and icon.visible and icon.menu is window.tray.menu
    assert action_texts(icon.menu)[1:] == ["&Show Taskdesk", "&Pause queue", "P&references…",
                                           "&Quit Taskdesk"]
    window.hide()
    window.tray.show_action.trigger()
    qtbot.waitUntil(window.isVisible)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)

    window.tray.pause_action.trigger()
    assert service.paused()
    assert window.tray.state is TrayState.PAUSED and "Paused" in icon.tooltip
    window.tray.pause_action.trigger()
    assert not service.paused()
    service.set_paused(True)  # from the API or the toolbar: the menu follows
    icon.menu.aboutToShow.emit()
    assert window.tray.pause_action.isChecked()

    window.tray.preferences_action.trigger()
    qtbot.waitUntil(lambda: window.findChild(PreferencesDialog) is not None)
    dialog = window.findChild(PreferencesDialog)
    assert dialog is not None and dialog.close_to_tray.isEnabled()
    dialog.reject()


def test_clicking_the_tray_icon_shows_the_window(qtbot: QtBot, make_window: Make) -> None:
    window, icon = make_window()
    assert icon is not None
    window.hide()
    icon.activated.emit(QSystemTrayIcon.ActivationReason.Context)  # the menu: nothing else
    assert not window.isVisible()
    icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    qtbot.waitUntil(window.isVisible)


def test_quit_from_the_tray_ends_the_event_loop(qapp: QApplication, make_window: Make) -> None:
    """main.py shuts down once app.exec() returns: the tray's Quit must end the loop, even
    with close to tray on (a quit closes the window, which must not hide instead)."""
    window, _icon = make_window()
    assert window.tray.keeps_running_when_closed
    QTimer.singleShot(0, window.tray.quit_action.trigger)
    give_up = QTimer()
    give_up.setSingleShot(True)
    give_up.timeout.connect(lambda: qapp.exit(1))
    give_up.start(WAIT_MS)
    try:
        assert qapp.exec() == 0
    finally:
        give_up.stop()
    assert not window.isVisible()


def test_the_tray_shows_working_and_failed_until_the_window_is_looked_at(
    qtbot: QtBot, make_window: Make, service: TaskService,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    register_failing(service)
    window, icon = make_window()
    assert icon is not None
    qtbot.waitUntil(lambda: "Idle" in icon.tooltip)
    service.submit("uppercase", {"text": "x"})
    window.tray.refresh()
    assert "Working · 0 running, 1 queued" in icon.tooltip
    window.hide()  # closed to the tray, say
    pool_factory(workers=1)
    service.submit("explode", {})
    qtbot.waitUntil(lambda: window.tray.state is TrayState.FAILED, timeout=WAIT_MS)
    assert "1 task failed" in icon.tooltip
    assert icon.icon is not None
    assert icon.icon.pixmap(64).toImage() == window.tray.icon_for(TrayState.FAILED).pixmap(
        64).toImage()
    window.tray.show_action.trigger()
    qtbot.waitUntil(lambda: window.tray.state is not TrayState.FAILED)


def test_state_icons_differ_and_the_state_rules() -> None:
    images = {state: state_icon(state).pixmap(32).toImage() for state in TrayState}
    assert len({img.cacheKey() for img in images.values()}) == len(TrayState)
    assert len({bytes(img.constBits()) for img in images.values()}) == len(TrayState)
    assert tray_state(0, 0, False, 0) is TrayState.IDLE
    assert tray_state(0, 3, False, 0) is TrayState.WORKING
    assert tray_state(1, 0, True, 0) is TrayState.PAUSED
    assert tray_state(1, 0, True, 2) is TrayState.FAILED


def test_failures_are_notified_through_the_tray_grouped(
    qtbot: QtBot, make_window: Make, service: TaskService,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    register_failing(service)
    _window, icon = make_window()
    assert icon is not None
    for _ in range(5):
        service.submit("explode", {})
    pool_factory(workers=2)
    qtbot.waitUntil(lambda: service.counts()[TaskStatus.FAILED] == 5, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(icon.messages) >= 1, timeout=WAIT_MS)
    # One for the burst's first moments; any failure after those waits for the interval
    # (30 s), so there is no second one yet.
    [(title, text, severity)] = icon.messages
    assert title == "Task failed" or title.endswith(" tasks failed")
    assert "explode" in text and "ValueError: no good" in text
    assert severity == QSystemTrayIcon.MessageIcon.Warning


def test_a_task_submitted_from_the_window_is_told_when_it_finishes(
    qtbot: QtBot, make_window: Make, settings: QSettings,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    Preferences(notify_finished=True).save(settings)
    window, icon = make_window()
    assert icon is not None
    compose = window.compose
    compose.action_combo.setCurrentIndex(compose.action_combo.findText("uppercase"))
    compose.json_edit.setPlainText('{"text": "mine"}')
    compose.submit()
    pool_factory(workers=1)
    qtbot.waitUntil(lambda: len(icon.messages) == 1, timeout=WAIT_MS)
    title, text, severity = icon.messages[0]
    assert (title, severity) == ("Your task finished", QSystemTrayIcon.MessageIcon.Information)
    assert text.startswith("uppercase ") and text.endswith(" completed")


# -- closing to the tray ------------------------------------------------------------------------


def test_closing_the_window_keeps_the_api_and_workers_running_in_the_tray(
    qtbot: QtBot, make_window: Make, api_factory: Callable[..., Client],
    pool_factory: Callable[..., WorkerPool], service: TaskService, settings: QSettings,
) -> None:
    client = api_factory()
    pool = pool_factory(workers=2)
    window, icon = make_window(pool=pool, api_url=client.base_url)
    assert icon is not None
    assert not QGuiApplication.quitOnLastWindowClosed()  # closing must not end the loop

    event = SpontaneousClose()
    window.closeEvent(event)
    assert not event.isAccepted()
    assert not window.isVisible()
    assert [m[0] for m in icon.messages] == ["Taskdesk is still running"]

    # Hidden, not gone: the API answers and the workers run what it accepts.
    response = client.post("/tasks", {"action": "uppercase", "data": {"text": "tray"}})
    assert response.status == 202
    task_id = response.json()["id"]
    qtbot.waitUntil(lambda: service.get(task_id).status == TaskStatus.COMPLETED,
                    timeout=WAIT_MS)

    window.tray.show_action.trigger()
    qtbot.waitUntil(window.isVisible)
    window.closeEvent(SpontaneousClose())  # again: hidden again, told only the first time
    assert not window.isVisible() and len(icon.messages) == 1


def test_close_to_tray_is_remembered_and_can_be_turned_off(
    qtbot: QtBot, make_window: Make, settings: QSettings
) -> None:
    window, _icon = make_window()
    window.open_preferences()
    qtbot.waitUntil(lambda: window.findChild(PreferencesDialog) is not None)
    dialog = window.findChild(PreferencesDialog)
    assert dialog is not None and dialog.close_to_tray.isChecked()
    dialog.close_to_tray.setChecked(False)
    dialog.notify_finished.setChecked(True)
    dialog.accept()
    assert not window.preferences.close_to_tray
    assert QGuiApplication.quitOnLastWindowClosed()
    event = SpontaneousClose()
    window.closeEvent(event)
    assert event.isAccepted()  # closes: Taskdesk quits as before

    again, _ = make_window()  # the next start
    assert again.preferences == Preferences(close_to_tray=False, notify_finished=True)
    assert not again.tray.keeps_running_when_closed


def test_a_quit_is_never_refused_by_close_to_tray(make_window: Make) -> None:
    """A close that is not the window's own button (a quit, SIGTERM, logging out) closes."""
    window, _ = make_window()
    assert window.tray.keeps_running_when_closed
    event = QCloseEvent()
    window.closeEvent(event)
    assert event.isAccepted()


# -- no tray ------------------------------------------------------------------------------------


def test_without_a_tray_everything_works_and_closing_quits(
    qtbot: QtBot, make_window: Make, service: TaskService,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    register_failing(service)
    window, icon = make_window(tray=False)
    assert icon is None and window.tray.icon is None
    assert not window.tray.available and not window.tray.keeps_running_when_closed
    assert QGuiApplication.quitOnLastWindowClosed()
    assert isinstance(window.notifier.sink, StatusBarSink)
    window.tray.refresh()
    window.tray.note_failures(1)
    window.tray.set_paused(True)
    window.tray.set_paused(False)

    # Notifications land in the status bar instead.
    pool_factory(workers=1)
    service.submit("explode", {})
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("Task failed: "),
                    timeout=WAIT_MS)

    window.open_preferences()
    qtbot.waitUntil(lambda: window.findChild(PreferencesDialog) is not None)
    dialog = window.findChild(PreferencesDialog)
    assert dialog is not None and not dialog.close_to_tray.isEnabled()
    dialog.accept()
    assert window.preferences.close_to_tray  # the choice for a desktop with a tray is kept

    event = SpontaneousClose()
    window.closeEvent(event)
    assert event.isAccepted()


def test_a_tray_without_messages_falls_back_to_the_status_bar(make_window: Make) -> None:
    window, icon = make_window(messages=False)
    assert icon is not None and window.tray.keeps_running_when_closed
    assert isinstance(window.notifier.sink, StatusBarSink)
    window.notifier.sink.notify(NoticeKind.DATABASE, "Database unavailable", "disk full")
    assert window.statusBar().currentMessage() == "Database unavailable: disk full"
    window.closeEvent(SpontaneousClose())
    assert icon.messages == []  # no "still running" balloon where messages cannot be shown
