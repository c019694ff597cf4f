# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""The task table ordered by a clicked column (the store's order, paged, kept live and
remembered) and Export to CSV or JSON: real service, real SQLite, the real window."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, QPoint, QSettings, Qt
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from gui.main_window import AppInfo, MainWindow
from gui.task_table_model import Column, TaskTableModel
from service.export import CSV_COLUMNS
from service.task_service import TaskService
from storage import TaskQuery, TaskSort, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.conftest import claim_task, run_claimed
from tests.gui_helpers import isolated_settings  # noqa: F401 (an autouse fixture, by name)

ROOT = QModelIndex()


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def windows(qtbot: QtBot, service: TaskService, settings: QSettings, db_path: Path
            ) -> Iterator[list[MainWindow]]:
    opened: list[MainWindow] = []
    yield opened
    for window in opened:
        window.shutdown()


def open_window(qtbot: QtBot, service: TaskService, settings: QSettings, db_path: Path,
                opened: list[MainWindow]) -> MainWindow:
    window = MainWindow(service, None, AppInfo("9.9.9", db_path, None, None, None),
                        settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    opened.append(window)
    return window


def click_header(qtbot: QtBot, window: MainWindow, column: Column) -> None:
    header = window.table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, 5))


def shown_ids(window: MainWindow) -> list[str]:
    return [t.id for t in window.model.tasks()]


def mixed_tasks(service: TaskService) -> list[str]:
    """Tasks of three actions, some run (so with start and finish times), some cancelled."""
    ids = [service.submit(action, {"text": "x"}).id
           for action in ("beta", "alpha", "gamma", "alpha", "beta", "delta")]
    for task_id in ids[:3]:
        started = claim_task(service, task_id)
        assert started is not None and run_claimed(service, started) is not None
    service.cancel(ids[5])
    return ids


def test_a_header_click_orders_by_that_column_both_ways_and_it_is_remembered(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, settings: QSettings,
    db_path: Path, windows: list[MainWindow]
) -> None:
    mixed_tasks(service)
    window = open_window(qtbot, service, settings, db_path, windows)
    header = window.table.horizontalHeader()
    assert shown_ids(window) == [t.id for t in store.page(TaskQuery(), 100)]  # newest first

    click_header(qtbot, window, Column.ACTION)  # a name: A first
    by_action = TaskQuery(sort=TaskSort.ACTION, descending=False)
    assert window.model.sort_order == (TaskSort.ACTION, False)
    assert shown_ids(window) == [t.id for t in store.page(by_action, 100)]
    assert [t.action for t in window.model.tasks()][:2] == ["alpha", "alpha"]
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (
        Column.ACTION, Qt.SortOrder.AscendingOrder)

    click_header(qtbot, window, Column.ACTION)  # again: the other way
    assert window.model.sort_order == (TaskSort.ACTION, True)
    assert window.model.tasks()[0].action == "gamma"

    click_header(qtbot, window, Column.STARTED)  # a time: latest first, not started last
    started = TaskQuery(sort=TaskSort.STARTED, descending=True)
    assert shown_ids(window) == [t.id for t in store.page(started, 100)]
    assert window.model.tasks()[-1].started_at is None
    assert header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder

    click_header(qtbot, window, Column.OUTPUT)  # not a column the store orders by
    assert window.model.sort_order == (TaskSort.STARTED, True)
    assert header.sortIndicatorSection() == Column.STARTED

    window.shutdown()
    again = open_window(qtbot, service, settings, db_path, windows)
    assert again.model.sort_order == (TaskSort.STARTED, True)
    assert shown_ids(again) == [t.id for t in store.page(started, 100)]
    again_header = again.table.horizontalHeader()
    assert (again_header.sortIndicatorSection(), again_header.sortIndicatorOrder()) == (
        Column.STARTED, Qt.SortOrder.DescendingOrder)


def test_pages_are_fetched_and_live_changes_kept_in_the_chosen_order(
    service: TaskService, store: SqliteTaskStore
) -> None:
    ids = [service.submit(f"job-{i % 7}", {}).id for i in range(40)]
    model = TaskTableModel(service, page_size=5, live_window=10)
    model.set_sort(TaskSort.ACTION, False, reload=False)
    model.set_filter(None)
    query = TaskQuery(sort=TaskSort.ACTION, descending=False)
    while model.canFetchMore(ROOT):
        model.fetchMore(ROOT)
    assert [t.id for t in model.tasks()] == [t.id for t in store.page(query, 100)]

    # By status: changes move tasks, near the top (the live window) and further down.
    model.set_sort(TaskSort.STATUS, False)
    query = TaskQuery(sort=TaskSort.STATUS, descending=False)
    while model.canFetchMore(ROOT):
        model.fetchMore(ROOT)
    changed = {}
    for task_id in (ids[0], ids[17], ids[39]):
        cancelled = service.cancel(task_id)
        changed[task_id] = cancelled.seq
    done = claim_task(service, ids[5])
    assert done is not None
    finished = run_claimed(service, done)
    assert finished is not None
    changed[ids[5]] = finished.seq
    new = service.submit("job-new", {})
    changed[new.id] = new.seq
    model.refresh(changed)
    # As many rows as the user scrolled to (40): the new one pushed the last out.
    assert [t.id for t in model.tasks()] == [t.id for t in store.page(query, 40)]
    assert [t.status for t in model.tasks()][:3] == [TaskStatus.CANCELLED] * 3
    model.fetchMore(ROOT)
    assert [t.id for t in model.tasks()] == [t.id for t in store.page(query, 100)]
    assert len(model.tasks()) == 41 and not model.canFetchMore(ROOT)


def choose_file(monkeypatch: pytest.MonkeyPatch, path: Path, chosen: str = "") -> list[Any]:
    asked: list[Any] = []

    def get_save_file_name(*args: Any, **kwargs: Any) -> tuple[str, str]:
        asked.append(args)
        return str(path), chosen

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(get_save_file_name))
    return asked


def test_export_writes_every_shown_task_in_order_off_the_gui_thread(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore, settings: QSettings,
    db_path: Path, windows: list[MainWindow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed_tasks(service)
    service.submit_many("bulk", {"text": "a, \"b\"\nc"}, 2500)  # more than a page
    window = open_window(qtbot, service, settings, db_path, windows)
    window.filter_bar.set_status(TaskStatus.QUEUED)
    window._apply_filter()
    window.sort_by(TaskSort.ACTION, False)
    assert window.model.rowCount() < 2500  # only a page is loaded; the export has them all
    target = tmp_path / "out" / "queued"  # no extension: the filter chosen gives it
    target.parent.mkdir()
    asked = choose_file(monkeypatch, target, "CSV files (*.csv)")
    window.export_action.trigger()
    assert asked
    written = target.with_suffix(".csv")
    qtbot.waitUntil(lambda: "Exported" in window.statusBar().currentMessage(), timeout=30_000)
    with open(written, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(CSV_COLUMNS)
    query = TaskQuery(status=TaskStatus.QUEUED, sort=TaskSort.ACTION, descending=False)
    assert [r[0] for r in rows[1:]] == [t.id for t in store.page(query, 10_000)]
    assert len(rows) - 1 == 2500 + 2
    assert f"Exported {len(rows) - 1:,} tasks to queued.csv" in (
        window.statusBar().currentMessage())
    assert not written.with_name("queued.csv.part").exists()


def test_export_of_the_selection_as_json_and_a_file_that_cannot_be_written(
    qtbot: QtBot, service: TaskService, settings: QSettings, db_path: Path,
    windows: list[MainWindow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = mixed_tasks(service)
    window = open_window(qtbot, service, settings, db_path, windows)
    window.table.select_ids([ids[1], ids[4]])
    choose_file(monkeypatch, tmp_path / "picked.JSON")  # the extension wins, in any case
    window.export_selected_action.trigger()
    qtbot.waitUntil(lambda: "Exported 2 tasks" in window.statusBar().currentMessage(),
                    timeout=30_000)
    document = json.loads((tmp_path / "picked.JSON").read_text(encoding="utf-8"))
    assert document["count"] == 2
    assert [t["id"] for t in document["tasks"]] == [ids[4], ids[1]]  # newest first
    assert document["tasks"][0] == json.loads(service.get(ids[4]).to_json())

    told: list[tuple[str, str]] = []
    monkeypatch.setattr(window, "tell_user", lambda title, text: told.append((title, text)))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    choose_file(monkeypatch, blocker / "tasks.csv")
    window.export_action.trigger()
    qtbot.waitUntil(lambda: bool(told), timeout=30_000)
    [(title, text)] = told
    assert title == "Export failed" and str(blocker / "tasks.csv") in text
    assert "Not a directory" in text and "Traceback" not in text
