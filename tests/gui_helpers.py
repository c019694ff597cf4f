# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""Fixtures and helpers for tests of the whole window; import the fixtures by name:
``from tests.gui_helpers import isolated_settings, make_window``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from gui.main_window import AppInfo, MainWindow
from gui.task_table_model import Column
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import Task

WindowFactory = Callable[..., MainWindow]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path) -> Iterator[None]:
    """Any QSettings() made without a file lands in tmp_path, never in the user's settings."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    yield
    QSettings.setDefaultFormat(QSettings.Format.NativeFormat)


@pytest.fixture
def make_window(
    qtbot: QtBot, service: TaskService, tmp_path: Path, db_path: Path
) -> Iterator[WindowFactory]:
    """Make a shown MainWindow over *svc* (default: the fixture service); shut down after."""
    windows: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)

    def make(
        svc: TaskService | None = None,
        pool: WorkerPool | None = None,
        load_problems: list[str] | None = None,
    ) -> MainWindow:
        info = AppInfo("9.9.9", db_path, None, None, None, load_problems or [])
        window = MainWindow(svc or service, pool, info, settings=settings)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()


def activate(qtbot: QtBot, window: MainWindow) -> None:
    """Window shortcuts only fire in the active window."""
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)


def task_in_table(window: MainWindow, task_id: str) -> Task | None:
    row = window.model.row_of(task_id)
    return None if row is None else window.model.task_at(row)


def cell(window: MainWindow, task_id: str, column: Column, role: Any = None) -> Any:
    row = window.model.row_of(task_id)
    assert row is not None
    index = window.model.index(row, column)
    return index.data() if role is None else index.data(role)


def click_row(qtbot: QtBot, window: MainWindow, task_id: str) -> None:
    row = window.model.row_of(task_id)
    assert row is not None
    rect = window.table.visualRect(window.model.index(row, Column.ACTION))
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, rect.center())


def clear_and_type(qtbot: QtBot, widget: QWidget, text: str) -> None:
    widget.setFocus()
    qtbot.keyClick(widget, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(widget, Qt.Key.Key_Delete)
    if text:
        qtbot.keyClicks(widget, text)
