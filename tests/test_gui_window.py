# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""The window end to end: real service, real SQLite, real workers and HTTP where it matters."""

from __future__ import annotations

import json
import shlex
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QSettings, Qt
from PySide6.QtGui import QGuiApplication, QHelpEvent
from PySide6.QtWidgets import QApplication, QLineEdit, QToolTip
from pytestqt.qtbot import QtBot

from gui.main_window import AppInfo, MainWindow
from gui.task_actions import curl_command
from gui.task_table_model import Column
from service.actions import ActionRegistry, default_registry
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import Task, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.action_helpers import python_action
from tests.conftest import claim_task, run_claimed
from tests.gui_helpers import isolated_settings  # noqa: F401 (an autouse fixture, by name)

# The offscreen platform reports this once per shown top-level window; it is not our bug.

WindowFactory = Callable[..., MainWindow]


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(
    qtbot: QtBot, service: TaskService, settings: QSettings, db_path: Path
) -> Iterator[WindowFactory]:
    windows: list[MainWindow] = []

    def make(
        svc: TaskService | None = None,
        pool: WorkerPool | None = None,
        api_url: str | None = None,
        api_error: str | None = None,
        token: str | None = None,
    ) -> MainWindow:
        info = AppInfo("9.9.9", db_path, api_url, api_error, token)
        window = MainWindow(svc or service, pool, info, settings=settings)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()


SHOWN = (None, TaskStatus.QUEUED, TaskStatus.COMPLETED, TaskStatus.CANCELLED)


def activate(qtbot: QtBot, window: MainWindow) -> None:
    """Window shortcuts only fire in the active window."""
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)


def task_in_table(window: MainWindow, task_id: str) -> Task | None:
    row = window.model.row_of(task_id)
    return None if row is None else window.model.task_at(row)


def shown_status(window: MainWindow, task_id: str) -> str | None:
    task = task_in_table(window, task_id)
    return None if task is None else task.status


def cell(window: MainWindow, task_id: str, column: Column) -> Any:
    row = window.model.row_of(task_id)
    assert row is not None
    return window.model.index(row, column).data()


def click_row(qtbot: QtBot, window: MainWindow, task_id: str, modifier: Any = None) -> None:
    row = window.model.row_of(task_id)
    assert row is not None
    rect = window.table.visualRect(window.model.index(row, Column.ACTION))
    modifiers = modifier or Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, modifiers, rect.center())


def form_field(window: MainWindow, name: str) -> Any:
    widget = window.compose.form.field(name)
    assert widget is not None, name
    return widget


def add_list_item(qtbot: QtBot, window: MainWindow, name: str, text: str) -> None:
    """Add an item to the list editor of field *name*, as a user does."""
    view = form_field(window, name)
    row = window.compose.form.row(name)
    assert row is not None
    qtbot.mouseClick(row.editor.inputs[1], Qt.MouseButton.LeftButton)  # Add
    line = view.viewport().findChild(QLineEdit)  # Add opened the new item's editor
    assert line is not None
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.viewport().findChild(QLineEdit) is None)


def registry_with(**handlers: Callable[[dict[str, Any]], Any]) -> ActionRegistry:
    registry = default_registry()
    for name, handler in handlers.items():
        registry.register(python_action(name, handler, lambda data: None, name))
    return registry


def boom(data: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


# -- compose and submit ---------------------------------------------------------------------


def test_click_submit_shows_queued_then_completed(
    qtbot: QtBot, make_window: WindowFactory, pool_factory: Callable[..., WorkerPool],
    store: SqliteTaskStore,
) -> None:
    window = make_window()
    compose = window.compose
    compose.action_combo.setCurrentText("uppercase")
    qtbot.keyClicks(form_field(window, "text"), "hello world")
    assert json.loads(compose.json_edit.toPlainText()) == {"text": "hello world"}
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)

    # No workers yet, so the task must be shown, at the top, as queued right after the click.
    [task] = store.page(TaskQuery(), 1000)
    assert window.model.task_at(0) == task
    assert cell(window, task.id, Column.STATUS) == "Queued"
    assert cell(window, task.id, Column.ID) == task.id[:8]
    assert window.filter_bar.count_text(TaskStatus.QUEUED).endswith(" 1")

    pool = pool_factory(workers=2)
    window.pool = pool
    qtbot.waitUntil(lambda: shown_status(window, task.id) == "completed")
    assert cell(window, task.id, Column.OUTPUT) == "HELLO WORLD"
    assert store.get(task.id).result == {"output": "HELLO WORLD"}  # type: ignore[union-attr]
    assert window.filter_bar.count_text(TaskStatus.COMPLETED).endswith(" 1")


# The offscreen platform cannot raise the tooltip's window; it says so.
@pytest.mark.qt_log_ignore("does not support raise")
def test_hovering_a_cell_shows_its_tooltip_made_on_demand(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService
) -> None:
    task = service.submit("uppercase", {"text": "hover me"})
    window = make_window()
    row = window.model.row_of(task.id)
    assert row is not None
    view = window.table

    def hover(column: Column) -> None:
        rect = view.visualRect(window.model.index(row, column))
        event = QHelpEvent(QEvent.Type.ToolTip, rect.center(),
                           view.viewport().mapToGlobal(rect.center()))
        QApplication.sendEvent(view.viewport(), event)

    hover(Column.ID)  # the full id, which the cell shortens
    qtbot.waitUntil(lambda: QToolTip.text() == task.id)
    hover(Column.ACTION)  # no tooltip of its own: the previous one goes away
    qtbot.waitUntil(lambda: not QToolTip.isVisible())


def test_ctrl_enter_submits_copies(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore
) -> None:
    window = make_window()
    activate(qtbot, window)
    window.compose.action_combo.setCurrentText("sum")
    window.compose.json_edit.setPlainText('{"numbers": [1, 2, 3.5]}')
    window.compose.copies_spin.setValue(25)
    qtbot.keyClick(window.compose.json_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    tasks = store.page(TaskQuery(), 100)
    assert len(tasks) == 25
    assert {(t.action, json.dumps(t.data)) for t in tasks} == {
        ("sum", json.dumps({"numbers": [1, 2, 3.5]}))
    }
    assert window.model.rowCount() == 25
    assert "25 tasks" in window.compose.message_label.text()


def test_task_posted_over_http_appears_and_completes(
    qtbot: QtBot, make_window: WindowFactory, api_factory: Callable[..., Any],
    pool_factory: Callable[..., WorkerPool],
) -> None:
    client = api_factory()
    window = make_window(api_url=client.base_url)
    pool_factory(workers=2)
    response = client.post("/tasks", {"action": "sum", "data": {"numbers": [1, 2, 3]}})
    assert response.status == 202
    task_id = response.json()["id"]
    qtbot.waitUntil(lambda: shown_status(window, task_id) == "completed")
    assert cell(window, task_id, Column.OUTPUT) == "6"
    assert cell(window, task_id, Column.ATTEMPTS) == "1/3"


@pytest.mark.parametrize(
    ("action", "field", "text", "reason"),
    [
        ("sum", "numbers", "two", "Numbers: item 1: “two” is not a number"),
        ("uppercase", "json_edit", '{"text": ', "invalid JSON"),
        ("uppercase", "json_edit", '{"text": 5}', "data.text: 5 is not of type 'string'"),
        ("sum", "json_edit", "[1, 2]", "must be a JSON object"),
        ("sum", "json_edit", '{"numbers": [1, true]}',
         "data.numbers[1]: True is not of type 'number'"),
    ],
)
def test_invalid_input_disables_submit_and_writes_nothing(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore,
    action: str, field: str, text: str, reason: str,
) -> None:
    window = make_window()
    compose = window.compose
    compose.action_combo.setCurrentText(action)
    assert compose.submit_button.isEnabled()
    if field == "json_edit":
        compose.json_edit.clear()
        qtbot.keyClicks(compose.json_edit, text)
    else:  # a form field
        add_list_item(qtbot, window, field, text)

    assert not compose.submit_button.isEnabled()
    assert reason in compose.message_label.text()
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    activate(qtbot, window)
    qtbot.keyClick(compose.json_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert store.count(TaskQuery()) == 0
    assert window.model.rowCount() == 0


def test_empty_action_is_refused(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    window.compose.action_combo.setCurrentText("")
    assert not window.compose.submit_button.isEnabled()
    assert "action required" in window.compose.message_label.text()


def test_form_and_json_stay_in_sync(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    compose = window.compose
    compose.action_combo.setCurrentText("sum")
    assert json.loads(compose.json_edit.toPlainText()) == {}
    add_list_item(qtbot, window, "numbers", "4")
    add_list_item(qtbot, window, "numbers", "5")
    assert json.loads(compose.json_edit.toPlainText()) == {"numbers": [4, 5]}
    compose.json_edit.setPlainText('{"numbers": [7, 8.5], "note": "kept"}')
    numbers = form_field(window, "numbers")
    assert [numbers.item(i).text() for i in range(numbers.count())] == ["7", "8.5"]
    add_list_item(qtbot, window, "numbers", "1")
    assert json.loads(compose.json_edit.toPlainText()) == {"numbers": [7, 8.5, 1], "note": "kept"}

    # Any other action: no form, the JSON is sent as typed.
    compose.action_combo.setCurrentText("resize-image")
    compose.json_edit.setPlainText('{"width": 64}')
    assert compose.submit_button.isEnabled()
    assert compose.parsed_data() == {"width": 64}


# -- table: filters, search, counts ----------------------------------------------------------


def test_status_filter_and_search_show_matching_rows_and_counts(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
) -> None:
    alpha = [service.submit("alpha", {"i": i}) for i in range(4)]
    beta = [service.submit("beta", {"i": i}) for i in range(3)]
    service.cancel(alpha[0].id)
    service.cancel(beta[0].id)
    done = run_claimed(service, claim_task(service, alpha[1].id))  # type: ignore[arg-type]
    assert done is not None and done.status == "completed"

    window = make_window()
    bar = window.filter_bar
    assert window.model.rowCount() == 7
    assert [bar.count_text(s) for s in SHOWN] == [
        "All  7", "Queued  4", "Completed  1", "Cancelled  2"
    ]

    qtbot.mouseClick(bar.button(TaskStatus.CANCELLED), Qt.MouseButton.LeftButton)
    assert {t.id for t in window.model.tasks()} == {alpha[0].id, beta[0].id}

    qtbot.keyClicks(bar.search_edit, "alp")  # debounced: the table follows shortly after
    qtbot.waitUntil(lambda: window.model.search == "alp")
    assert [t.id for t in window.model.tasks()] == [alpha[0].id]
    assert [bar.count_text(s) for s in SHOWN] == [
        "All  4", "Queued  2", "Completed  1", "Cancelled  1"
    ]

    qtbot.mouseClick(bar.button(TaskStatus.QUEUED), Qt.MouseButton.LeftButton)
    assert [t.id for t in window.model.tasks()] == [alpha[3].id, alpha[2].id]

    # Search by id prefix, whatever the action.
    bar.search_edit.setText(beta[2].id[:6])
    qtbot.waitUntil(lambda: window.model.search == beta[2].id[:6])
    assert [t.id for t in window.model.tasks()] == [beta[2].id]
    qtbot.mouseClick(bar.button(None), Qt.MouseButton.LeftButton)
    assert [t.id for t in window.model.tasks()] == [beta[2].id]

    # New tasks that match appear live; others do not.
    bar.search_edit.setText("beta")
    qtbot.waitUntil(lambda: window.model.search == "beta")
    qtbot.mouseClick(bar.button(TaskStatus.QUEUED), Qt.MouseButton.LeftButton)
    new_beta = service.submit("beta", {})
    service.submit("alpha", {})
    qtbot.waitUntil(lambda: window.model.task_at(0) is not None
                    and window.model.task_at(0).id == new_beta.id)  # type: ignore[union-attr]
    assert [t.id for t in window.model.tasks()] == [new_beta.id, beta[2].id, beta[1].id]
    assert bar.count_text(TaskStatus.QUEUED) == "Queued  3"
    assert store.count(TaskQuery()) == 9


def test_new_tasks_do_not_move_rows_the_user_scrolled_to(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService
) -> None:
    service.submit_many("job", {}, 80)  # within the first page
    window = make_window()
    table = window.table
    table.scrollTo(window.model.index(40, 0), table.ScrollHint.PositionAtTop)
    anchor = table.top_task_id()
    assert anchor is not None
    service.submit_many("job", {}, 15)
    window.refresh_now()
    assert window.model.rowCount() == 95
    assert table.top_task_id() == anchor

    # At the very top, new tasks come into view instead.
    table.scrollToTop()
    newest = service.submit("job", {})
    window.refresh_now()
    assert table.rowAt(0) == 0 and window.model.task_at(0).id == newest.id  # type: ignore


# -- inspect and act -------------------------------------------------------------------------


def test_retry_failed_and_cancel_queued_from_the_ui(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore,
) -> None:
    svc = TaskService(store, registry_with(boom=boom), max_attempts=1)
    failed = run_claimed(svc, claim_task(svc, svc.submit("boom", {"n": 1}).id))  # type: ignore[arg-type]
    assert failed is not None and failed.status == "failed"
    queued = svc.submit("uppercase", {"text": "wait"})
    window = make_window(svc=svc)
    actions = window.task_actions
    retry_button, cancel_button = window.details.buttons[:2]

    click_row(qtbot, window, failed.id)
    assert window.details.shown == [task_in_table(window, failed.id)]
    assert "RuntimeError: boom" in window.details.view.toPlainText()
    assert retry_button.isEnabled() and not cancel_button.isEnabled()
    qtbot.mouseClick(retry_button, Qt.MouseButton.LeftButton)
    assert shown_status(window, failed.id) == "queued"
    retried = store.get(failed.id)
    assert retried is not None and retried.status == "queued" and retried.attempts == 0
    # The selection stays on the task and the buttons follow its new status.
    assert window.table.selected_ids() == [failed.id]
    assert cancel_button.isEnabled() and not retry_button.isEnabled()

    click_row(qtbot, window, queued.id)
    activate(qtbot, window)
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)
    assert shown_status(window, queued.id) == "cancelled"
    assert store.get(queued.id).status == "cancelled"  # type: ignore[union-attr]

    # Several at once, from the table's context menu: one cancelled, one queued.
    click_row(qtbot, window, failed.id, Qt.KeyboardModifier.ControlModifier)
    assert set(window.table.selected_ids()) == {failed.id, queued.id}
    assert actions.retry_action.isEnabled() and actions.cancel_action.isEnabled()
    assert actions.cancel_action in window.table.actions()
    actions.cancel_action.trigger()
    assert {shown_status(window, failed.id), shown_status(window, queued.id)} == {"cancelled"}
    qtbot.keyClick(window.table, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert store.get(failed.id).status == "queued"  # type: ignore[union-attr]
    assert store.get(queued.id).status == "queued"  # type: ignore[union-attr]
    assert not actions.retry_action.isEnabled()


def test_copy_id_and_curl(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService
) -> None:
    task = service.submit("uppercase", {"text": "it's ok"})
    window = make_window(api_url="http://127.0.0.1:8123", token="s3cret")
    click_row(qtbot, window, task.id)
    activate(qtbot, window)
    qtbot.keyClick(window.table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    clipboard = QGuiApplication.clipboard()
    assert clipboard.text() == task.id

    window.task_actions.copy_curl_action.trigger()
    command = clipboard.text()
    assert command == curl_command("http://127.0.0.1:8123", "s3cret", "uppercase",
                                   {"text": "it's ok"})
    words = shlex.split(command)
    assert words[:4] == ["curl", "-X", "POST", "http://127.0.0.1:8123/tasks"]
    assert "Authorization: Bearer s3cret" in words
    assert json.loads(words[-1]) == {"action": "uppercase", "data": {"text": "it's ok"}}


def test_curl_needs_the_api(qtbot: QtBot, make_window: WindowFactory, service: TaskService) -> None:
    task = service.submit("uppercase", {})
    window = make_window(api_error="cannot listen on 127.0.0.1:8080: port 8080 is already in use")
    click_row(qtbot, window, task.id)
    assert window.task_actions.copy_id_action.isEnabled()
    assert not window.task_actions.copy_curl_action.isEnabled()


# -- status bar, chart, menus ----------------------------------------------------------------


def test_status_bar_shows_api_workers_queue_and_copies_address(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService,
) -> None:
    pool = WorkerPool(service, workers=3)  # not started: nothing runs, nothing is busy
    for _ in range(4):
        service.submit("uppercase", {})
    window = make_window(pool=pool, api_url="http://127.0.0.1:8123")
    status = window.status
    assert status.workers_label.text() == "Workers 0/3 busy"
    assert status.queue_label.text() == "Queued 4"
    assert status.throughput_label.text() == "0.0 completed/s"
    assert status.api_button is not None
    qtbot.mouseClick(status.api_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "http://127.0.0.1:8123"
    assert "127.0.0.1:8123" in window.about_text()
    assert str(window.info.db_path) in window.about_text()
    assert "9.9.9" in window.about_text()


def test_window_works_without_api(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore
) -> None:
    reason = "cannot listen on 127.0.0.1:8080: port 8080 is already in use"
    window = make_window(api_error=reason)
    assert window.status.api_button is None
    assert window.status.api_label is not None
    assert reason in window.status.api_label.text()
    assert reason in window.about_text()
    qtbot.mouseClick(window.compose.submit_button, Qt.MouseButton.LeftButton)
    assert store.count(TaskQuery()) == 1


def test_chart_follows_rates(
    qtbot: QtBot, make_window: WindowFactory, pool_factory: Callable[..., WorkerPool],
    service: TaskService,
) -> None:
    window = make_window()
    pool_factory(workers=2)
    service.submit_many("uppercase", {"text": "x"}, 30)
    service.submit_many("boom-free", {}, 5)
    qtbot.waitUntil(lambda: sum(c for c, _ in window.chart.series) == 35, timeout=10_000)
    assert window.status.throughput_label.text() != "0.0 completed/s"
    assert window.filter_bar.count_text(TaskStatus.COMPLETED) == "Completed  35"


def test_keyboard_find_and_tab_order(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    activate(qtbot, window)
    qtbot.keyClick(window.table, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.filter_bar.search_edit.hasFocus()
    # Tab walks from the search box through the table (not its cells) to the compose form.
    qtbot.keyClick(window.filter_bar.search_edit, Qt.Key.Key_Tab)
    assert window.table.hasFocus()
    qtbot.keyClick(window.table, Qt.Key.Key_Tab)
    assert window.compose.action_combo.hasFocus()
    qtbot.keyClick(window.compose.action_combo, Qt.Key.Key_Tab)
    assert window.compose.tabs.tabBar().hasFocus()  # Form or JSON
    qtbot.keyClick(window.compose.tabs.tabBar(), Qt.Key.Key_Tab)
    assert form_field(window, "numbers").hasFocus()  # sum's form
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&Task", "&Queue", "&Help"]
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"


# -- settings and shutdown -------------------------------------------------------------------


def test_geometry_splitters_and_filter_persist(
    qtbot: QtBot, make_window: WindowFactory, settings: QSettings, tmp_path: Path,
) -> None:
    first = make_window()
    first.resize(780, 560)
    qtbot.mouseClick(first.filter_bar.button(TaskStatus.FAILED), Qt.MouseButton.LeftButton)
    first.main_splitter.setSizes([400, 300])
    first.table.horizontalHeader().resizeSection(Column.ACTION, 150)
    sizes = first.main_splitter.sizes()
    first.close()
    first.shutdown()
    assert (tmp_path / "window.ini").exists()

    second = make_window()
    assert (second.width(), second.height()) == (780, 560)
    assert second.filter_bar.status == "failed"
    assert second.model.status_filter == "failed"
    assert second.main_splitter.sizes() == sizes
    assert second.table.horizontalHeader().sectionSize(Column.ACTION) == 150


def test_quit_closes_the_window(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()
    activate(qtbot, window)
    qtbot.keyClick(window.table, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible())


def test_closing_while_tasks_run_loses_none(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore, db_path: Path,
) -> None:
    calls: Counter[int] = Counter()
    lock = threading.Lock()

    def count(data: dict[str, Any]) -> Any:
        with lock:
            calls[data["n"]] += 1
        return {"output": data["n"]}

    registry = registry_with(count=count)
    svc = TaskService(store, registry)
    pool = WorkerPool(svc, workers=2, prefetch=5, work_delay=0.05)
    pool.start()
    window = make_window(svc=svc, pool=pool)
    ids = [svc.submit("count", {"n": n}).id for n in range(20)]
    qtbot.waitUntil(lambda: window.filter_bar.count_text(TaskStatus.COMPLETED) != "Completed  0")

    # What main.py does after the event loop ends.
    window.close()
    window.shutdown()
    pool.stop()

    store2 = SqliteTaskStore(db_path)
    try:
        svc2 = TaskService(store2, registry)
        svc2.recover()
        pool2 = WorkerPool(svc2, workers=2, prefetch=5, work_delay=0)
        pool2.start()
        try:
            qtbot.waitUntil(lambda: store2.counts()[TaskStatus.COMPLETED] == 20, timeout=10_000)
        finally:
            pool2.stop()
        tasks = [store2.get(task_id) for task_id in ids]
        assert all(t is not None and t.status == "completed" and t.attempts == 1 for t in tasks)
        assert calls == Counter(range(20))
    finally:
        store2.close()

