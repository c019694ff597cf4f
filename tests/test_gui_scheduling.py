# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""The window's parts for when and in what order tasks run: the Due and Priority columns, the
Scheduled filter, the compose panel's When and order options, the Pause/Resume toolbar and
the status bar, the Schedules view, and deleting finished tasks. Real service and SQLite; the
service's clock is injected, so "due in" texts and due times move without waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PySide6.QtCore import QDateTime, QSettings, Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from gui.formatting import format_due, format_span
from gui.main_window import AppInfo, MainWindow
from gui.schedules_view import SchedulesDock
from gui.task_table_model import Column
from gui.when_options import AFTER_DELAY, AT_ONCE, AT_TIME
from service.schedules import Schedule, Scheduler
from service.task_service import TaskService
from storage import Task, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.conftest import claim_next, run_claimed
from tests.gui_helpers import isolated_settings  # noqa: F401 (an autouse fixture, by name)
from tests.test_schedules import Clock

NOW = float(int(time.time()) // 60 * 60)  # a whole minute, near the real time (QDateTime)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def timed(store: SqliteTaskStore, clock: Clock) -> TaskService:
    return TaskService(store, clock=clock)


WindowFactory = Callable[..., MainWindow]


@pytest.fixture
def make_window(qtbot: QtBot, timed: TaskService, tmp_path: Path, db_path: Path
                ) -> Iterator[WindowFactory]:
    windows: list[MainWindow] = []

    def make(schedules: Scheduler | None = None) -> MainWindow:
        settings = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
        info = AppInfo("9.9.9", db_path, None, None, None)
        window = MainWindow(timed, None, info, settings=settings, schedules=schedules)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()


def cell(window: MainWindow, task_id: str, column: Column) -> Any:
    row = window.model.row_of(task_id)
    assert row is not None, task_id
    return window.model.index(row, column).data()


def shown_ids(window: MainWindow) -> list[str]:
    return [t.id for t in window.model.tasks()]


def select(window: MainWindow, *task_ids: str) -> None:
    window.table.select_ids(task_ids)


# -- how times read -----------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0.2, "1 s"), (45, "45 s"), (59.4, "60 s"), (60, "1 min"), (240, "4 min"),
    (3599, "1 h"), (3600, "1 h"), (3600 + 300, "1 h 5 min"), (86_400, "1 d"),
    (86_400 * 3 + 4 * 3600, "3 d 4 h"),
])
def test_format_span(seconds: float, text: str) -> None:
    assert format_span(seconds) == text


def test_format_due(timed: TaskService, clock: Clock) -> None:
    later = timed.submit("x", delay=240)
    now = timed.submit("x")
    waiting = timed.submit("x", after=[now.id], delay=90)
    assert format_due(later, NOW) == "due in 4 min"
    assert format_due(now, NOW) == ""
    assert format_due(waiting, NOW) == "due in 2 min, after 1 task"
    assert format_due(later, NOW + 240) == ""
    assert format_due(timed.cancel(later.id), NOW) == ""  # not queued: nothing is due


# -- the table --------------------------------------------------------------------------------


def test_due_and_priority_columns_follow_the_clock(
    make_window: WindowFactory, timed: TaskService, clock: Clock,
) -> None:
    window = make_window()
    later = timed.submit("uppercase", {"text": "x"}, delay=240, priority=7)
    window.refresh_now()
    assert cell(window, later.id, Column.DUE) == "due in 4 min"
    assert cell(window, later.id, Column.PRIORITY) == "7"
    assert window.model.headerData(Column.DUE, Qt.Orientation.Horizontal) == "Due"
    assert "not before" in (window.model.tooltip(window.model.row_of(later.id) or 0,
                                                 Column.DUE) or "")
    clock.now = NOW + 60
    window._refresh_time_bound()  # what the 1 s timer does
    assert cell(window, later.id, Column.DUE) == "due in 3 min"
    clock.now = NOW + 240
    window._refresh_time_bound()
    assert cell(window, later.id, Column.DUE) == ""


def test_the_scheduled_filter_shows_tasks_not_due_yet_until_they_are_due(
    make_window: WindowFactory, timed: TaskService, clock: Clock, qtbot: QtBot,
) -> None:
    window = make_window()
    soon = timed.submit("x", delay=30)
    later = timed.submit("x", run_at=NOW + 3600)
    now = timed.submit("x")
    window.refresh_now()
    assert set(shown_ids(window)) == {soon.id, later.id, now.id}
    qtbot.mouseClick(window.filter_bar.scheduled_button, Qt.MouseButton.LeftButton)
    assert window.filter_bar.scheduled and window.model.scheduled
    assert shown_ids(window) == [later.id, soon.id]
    clock.now = NOW + 30  # soon is due: it leaves the scheduled list on the next tick
    window._refresh_time_bound()
    assert shown_ids(window) == [later.id]
    # Combined with a status: completed tasks are never scheduled.
    qtbot.mouseClick(window.filter_bar.button(TaskStatus.COMPLETED), Qt.MouseButton.LeftButton)
    assert shown_ids(window) == [] and "No completed scheduled tasks" in window.table.placeholder
    qtbot.mouseClick(window.filter_bar.scheduled_button, Qt.MouseButton.LeftButton)
    assert not window.model.scheduled


# -- composing ----------------------------------------------------------------------------------


def test_when_options_feed_the_submission(
    make_window: WindowFactory, timed: TaskService, store: SqliteTaskStore, qtbot: QtBot,
) -> None:
    window = make_window()
    first = timed.submit("uppercase", {"text": "first"})
    second = timed.submit("uppercase", {"text": "second"})
    window.refresh_now()
    when = window.compose.when
    assert not when.expanded and when.toggle.text() == "When and order: at once, priority 0"
    qtbot.mouseClick(when.toggle, Qt.MouseButton.LeftButton)
    assert when.expanded
    when.start_combo.setCurrentText(AFTER_DELAY)
    when.delay_spin.setValue(4)
    when.delay_unit.setCurrentText("minutes")
    when.priority_spin.setValue(12)
    select(window, first.id, second.id)
    qtbot.mouseClick(when.add_button, Qt.MouseButton.LeftButton)
    assert when.after_ids() == [second.id, first.id]  # the table's order: newest first
    assert when.options() == {"priority": 12, "delay": 240, "after": [second.id, first.id]}
    assert when.toggle.text() == "When and order: in 4 minutes, priority 12, after 2 tasks"
    qtbot.mouseClick(when.add_button, Qt.MouseButton.LeftButton)  # each once
    assert len(when.after_ids()) == 2
    compose = window.compose
    compose.action_combo.setCurrentIndex(compose.action_combo.findText("uppercase"))
    compose.json_edit.setPlainText('{"text": "third"}')
    window.compose.copies_spin.setValue(1)
    window.compose.submit()
    newest = store.page(TaskQuery(), 1)[0]
    assert (newest.data, newest.priority, newest.run_after, newest.after, newest.waiting) == (
        {"text": "third"}, 12, NOW + 240, (second.id, first.id), 2)
    # × N copies take the same options.
    window.compose.copies_spin.setValue(3)
    window.compose.submit()
    copies = store.page(TaskQuery(), 3)
    assert {(t.priority, t.run_after, t.after) for t in copies} == {
        (12, NOW + 240, (second.id, first.id))}
    # Removing one from the list.
    item = when.after_list.item(0)
    assert item is not None
    item.setSelected(True)
    qtbot.mouseClick(when.remove_button, Qt.MouseButton.LeftButton)
    assert when.after_ids() == [first.id]


def test_run_at_a_time_and_a_time_in_the_past_is_refused_with_the_reason(
    make_window: WindowFactory, store: SqliteTaskStore,
) -> None:
    window = make_window()
    when = window.compose.when
    when.start_combo.setCurrentText(AT_TIME)
    assert when.options()["run_at"] == NOW + 3600  # an hour from now, to start from
    when.run_at_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(NOW + 7200)))
    window.compose.submit()
    assert store.page(TaskQuery(), 1)[0].run_after == NOW + 7200
    when.run_at_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(NOW - 3600)))
    window.compose.submit()
    assert store.count(TaskQuery()) == 1
    assert "run_at is in the past" in window.compose.message_label.text()
    when.start_combo.setCurrentText(AT_ONCE)
    assert "run_at" not in when.options() and "delay" not in when.options()


# -- pause and resume ---------------------------------------------------------------------------


def test_the_toolbar_pauses_and_the_status_bar_says_so(
    make_window: WindowFactory, timed: TaskService, qtbot: QtBot,
) -> None:
    window = make_window()
    action = window.queue_toolbar.pause_action
    assert action.isCheckable() and action.shortcut().toString() == "Ctrl+Shift+P"
    assert not window.status.paused_shown
    action.trigger()  # as a click on the toolbar button does
    assert timed.paused() and action.isChecked()
    assert window.status.paused_shown and window.status.paused_label.text() == "⏸ Paused"
    # Submissions are still accepted while paused.
    window.compose.submit()
    assert timed.store.count(TaskQuery()) == 1
    # The keyboard resumes it.
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    qtbot.keyClick(window.table, Qt.Key.Key_P,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert not timed.paused() and not action.isChecked() and not window.status.paused_shown


def test_a_pause_from_elsewhere_shows_on_the_next_tick(
    make_window: WindowFactory, timed: TaskService, qtbot: QtBot,
) -> None:
    window = make_window()
    timed.set_paused(True)  # the API, or another instance sharing the database
    qtbot.waitUntil(lambda: window.status.paused_shown, timeout=5000)  # the 1 s timer
    assert window.queue_toolbar.pause_action.isChecked()
    timed.set_paused(False)
    qtbot.waitUntil(lambda: not window.status.paused_shown, timeout=5000)
    assert not window.queue_toolbar.pause_action.isChecked()


# -- schedules ----------------------------------------------------------------------------------


def test_the_schedules_view_lists_runs_pauses_and_resumes(
    make_window: WindowFactory, timed: TaskService, store: SqliteTaskStore, clock: Clock,
    qtbot: QtBot,
) -> None:
    scheduler = Scheduler(timed, [Schedule("hourly", "uppercase", {"text": "h"}, None, 3600.0),
                                  Schedule("nightly", "sum", {}, "30 2 * * *", None)],
                          zone=ZoneInfo("UTC"), clock=clock)
    window = make_window(scheduler)
    dock = window.schedules_dock
    assert not dock.isVisible()
    window.schedules_action.trigger()
    assert dock.isVisible() and dock.table.rowCount() == 2
    texts = [text(dock, 0, c) for c in range(dock.table.columnCount())]
    assert texts[:3] == ["hourly", "every 3600 s", "uppercase"]
    assert texts[4:] == ["—", "Active"] and "(in " in texts[3]
    assert not dock.run_button.isEnabled()
    dock.table.selectRow(0)
    assert dock.run_button.isEnabled() and dock.pause_button.isEnabled()
    assert not dock.resume_button.isEnabled()
    qtbot.mouseClick(dock.run_button, Qt.MouseButton.LeftButton)
    [task] = store.page(TaskQuery(), 10)
    assert (task.action, task.data) == ("uppercase", {"text": "h"})
    assert text(dock, 0, 4) == f"{task.id[:8]} queued"
    qtbot.mouseClick(dock.pause_button, Qt.MouseButton.LeftButton)
    assert store.schedule_states()["hourly"].paused
    assert text(dock, 0, 5) == "Paused" and text(dock, 0, 3) == "—"
    assert dock.resume_button.isEnabled() and not dock.pause_button.isEnabled()
    qtbot.mouseClick(dock.resume_button, Qt.MouseButton.LeftButton)
    assert not store.schedule_states()["hourly"].paused


def text(dock: SchedulesDock, row: int, column: int) -> str:
    item = dock.table.item(row, column)
    assert item is not None
    return item.text()


def test_without_schedules_the_view_says_how_to_declare_them(
    make_window: WindowFactory,
) -> None:
    window = make_window()
    window.schedules_action.trigger()
    dock = window.schedules_dock
    assert dock.empty_label.isVisible() and not dock.table.isVisible()
    assert "[schedules.<name>]" in dock.empty_label.text()


# -- deleting -----------------------------------------------------------------------------------


def finished_task(service: TaskService, text: str) -> Task:
    service.submit("uppercase", {"text": text})
    claimed = claim_next(service)
    assert claimed is not None
    done = run_claimed(service, claimed)
    assert done is not None and done.status == TaskStatus.COMPLETED
    return done


@pytest.mark.parametrize("answer", [QMessageBox.StandardButton.Yes,
                                    QMessageBox.StandardButton.Cancel])
def test_delete_asks_then_removes_finished_tasks_only(
    make_window: WindowFactory, timed: TaskService, store: SqliteTaskStore,
    monkeypatch: pytest.MonkeyPatch, answer: QMessageBox.StandardButton,
) -> None:
    window = make_window()
    done = [finished_task(timed, str(i)) for i in range(2)]
    queued = timed.submit("x")
    window.refresh_now()
    actions = window.task_actions
    select(window, queued.id)
    window._on_selection()
    assert not actions.delete_action.isEnabled()
    select(window, queued.id, *(t.id for t in done))
    window._on_selection()
    assert actions.delete_action.isEnabled()
    asked: list[str] = []

    def question(parent: Any, title: str, text: str, *args: Any) -> QMessageBox.StandardButton:
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    actions.delete_action.trigger()
    assert asked == ["Delete 2 finished tasks, with their results and logs? This cannot be "
                     "undone."]
    left = {t.id for t in store.page(TaskQuery(), 10)}
    if answer == QMessageBox.StandardButton.Yes:
        assert left == {queued.id}
        window.refresh_now()
        assert shown_ids(window) == [queued.id]
        assert "Deleted 2 tasks" in window.statusBar().currentMessage()
    else:
        assert left == {queued.id, *(t.id for t in done)}
    assert actions.delete_action in window.table.actions()
    assert actions.delete_action.shortcut().toString() == "Shift+Del"
