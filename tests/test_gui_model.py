"""TaskTableModel and ChangeFeed: paging, live refresh merging, coalescing, model contract."""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex
from pytestqt.qtbot import QtBot

from gui.change_feed import ChangeFeed
from gui.status_style import STATUS_ROLE
from gui.task_table_model import ID_ROLE, TASK_ROLE, Column, TaskTableModel
from service.task_service import TaskService
from storage import Task, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.conftest import claim_task, run_claimed

ROOT = QModelIndex()


def expected(store: SqliteTaskStore, model: TaskTableModel, n: int | None = None) -> list[Task]:
    """What the model should hold: the newest matching tasks, as many as it has loaded."""
    query = TaskQuery(status=model.status_filter, search=model.search or None)
    return store.page(query, n or model.rowCount())


def finish(service: TaskService, task_id: str) -> Task:
    started = claim_task(service, task_id)
    assert started is not None
    done = run_claimed(service, started)
    assert done is not None
    return done


def test_modeltester_with_pages_and_updates(
    qtmodeltester: Any, service: TaskService, store: SqliteTaskStore
) -> None:
    ids = service.submit_many("uppercase", {"text": "x"}, 450)
    model = TaskTableModel(service, page_size=200, live_window=300)
    model.set_filter(None)
    assert model.rowCount() == 200 and model.canFetchMore(ROOT)
    qtmodeltester.check(model)  # the C++ tester stays attached and checks every change below

    while model.canFetchMore(ROOT):  # the tester itself may have fetched a page
        model.fetchMore(ROOT)
    assert model.rowCount() == 450
    changed = [service.cancel(task_id) for task_id in (*ids[440:445], ids[10], ids[20])]
    changed.append(finish(service, ids[300]))
    new = [service.submit("sum", {"numbers": [i]}) for i in range(3)]
    model.refresh({t.id: t.seq for t in changed + new})
    assert model.tasks()[:3] == new[::-1]
    assert model.task_at(model.row_of(ids[10])).status == "cancelled"  # type: ignore
    assert model.tasks() == expected(store, model)



def test_modeltester_with_a_status_filter(
    qtmodeltester: Any, service: TaskService, store: SqliteTaskStore
) -> None:
    # A fresh model per filter: Qt's tester runs fetchMore from its own modelReset slot, before
    # it notes that the reset is over, so it reports a reset of a lazily-fetching model.
    ids = service.submit_many("uppercase", {"text": "x"}, 60)
    for task_id in ids[:10]:
        service.cancel(task_id)
    model = TaskTableModel(service, page_size=20, live_window=20)
    model.set_filter(TaskStatus.QUEUED)
    qtmodeltester.check(model)
    while model.canFetchMore(ROOT):
        model.fetchMore(ROOT)
    assert model.rowCount() == 50
    changed = [service.retry(ids[3]), service.cancel(ids[15]), service.cancel(ids[58])]
    changed.append(service.submit("sum", {"numbers": [1]}))
    model.refresh({t.id: t.seq for t in changed})
    assert model.tasks() == store.page(TaskQuery(status=TaskStatus.QUEUED), 100)


def test_pages_use_the_cursor_and_stop_at_the_end(
    service: TaskService, store: SqliteTaskStore
) -> None:
    service.submit_many("a", {}, 12)
    model = TaskTableModel(service, page_size=5)
    model.set_filter(None)
    seen = []
    while model.canFetchMore(ROOT):
        model.fetchMore(ROOT)
        seen.append(model.rowCount())
    assert seen == [10, 12]
    assert [t.seq for t in model.tasks()] == sorted((t.seq for t in model.tasks()), reverse=True)
    assert model.tasks() == store.page(TaskQuery(), 100)


def test_refresh_merges_inserts_changes_and_removals_without_reset(
    qtbot: QtBot, service: TaskService, store: SqliteTaskStore
) -> None:
    tasks = [service.submit("job", {"i": i}) for i in range(6)]
    model = TaskTableModel(service, page_size=50)
    model.set_filter(TaskStatus.QUEUED)
    signals: list[str] = []
    model.modelReset.connect(lambda: signals.append("reset"))
    model.rowsInserted.connect(lambda *_: signals.append("insert"))
    model.rowsRemoved.connect(lambda *_: signals.append("remove"))
    model.dataChanged.connect(lambda *_: signals.append("change"))

    service.cancel(tasks[2].id)  # leaves the "queued" filter
    newest = service.submit("job", {"i": 99})
    model.refresh()
    assert model.tasks() == expected(store, model, 50)
    assert model.task_at(0).id == newest.id  # type: ignore[union-attr]
    assert "reset" not in signals and {"insert", "remove"} <= set(signals)

    signals.clear()
    model.set_filter(None)
    signals.clear()
    finish(service, tasks[0].id)
    model.refresh()
    assert signals == ["change"]
    row = model.row_of(tasks[0].id)
    assert row is not None
    assert model.index(row, Column.STATUS).data() == "Completed"
    assert model.index(row, Column.STATUS).data(STATUS_ROLE) == "completed"
    assert model.index(row, Column.OUTPUT).data() == "processed"
    assert model.index(row, Column.ID).data(ID_ROLE) == tasks[0].id
    assert model.index(row, Column.ID).data(TASK_ROLE).status == "completed"


def test_loaded_rows_below_the_live_window_are_patched(
    service: TaskService, store: SqliteTaskStore
) -> None:
    ids = [service.submit("job", {"i": i}).id for i in range(30)]  # oldest first
    model = TaskTableModel(service, page_size=5, live_window=5)
    model.set_filter(TaskStatus.QUEUED)
    model.fetchMore(ROOT)
    model.fetchMore(ROOT)
    assert model.rowCount() == 15

    deep = ids[18]  # row 11, below the 5-row live window
    cancelled = service.cancel(deep)
    model.refresh({deep: cancelled.seq})
    assert deep not in {t.id for t in model.tasks()}
    assert model.tasks() == expected(store, model, 14)

    retried = service.retry(deep)
    model.refresh({deep: retried.seq})
    assert model.row_of(deep) == 11
    assert model.tasks() == expected(store, model, 15)

    # A change older than anything loaded is none of the table's business yet.
    very_old = service.cancel(ids[0])
    model.refresh({ids[0]: very_old.seq})
    assert model.rowCount() == 15 and model.canFetchMore(ROOT)


def test_new_tasks_push_old_rows_out_instead_of_growing_forever(
    service: TaskService, store: SqliteTaskStore
) -> None:
    service.submit_many("job", {}, 10)
    model = TaskTableModel(service, page_size=5, live_window=5)
    model.set_filter(None)
    for _ in range(4):
        service.submit_many("job", {}, 3)
        model.refresh()
        assert model.rowCount() == 5
        assert model.tasks() == store.page(TaskQuery(), 5)
        assert model.canFetchMore(ROOT)
    # A flood larger than the live window leaves no gap between old and new rows.
    service.submit_many("job", {}, 40)
    model.refresh()
    assert model.tasks() == store.page(TaskQuery(), 5)
    model.fetchMore(ROOT)
    assert model.tasks() == store.page(TaskQuery(), 10)


def test_selection_survives_refresh(qtbot: QtBot, service: TaskService) -> None:
    from PySide6.QtWidgets import QTableView

    first = service.submit("job", {})
    service.submit("job", {})
    model = TaskTableModel(service)
    model.set_filter(None)
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.selectionModel().select(
        model.index(model.row_of(first.id), 0),  # type: ignore[arg-type]
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    for _ in range(3):
        service.submit("job", {})
    model.refresh()
    selected = [model.task_at(i.row()) for i in view.selectionModel().selectedRows()]
    assert [t.id for t in selected if t is not None] == [first.id]


def test_rows_patched_below_the_live_window_follow_the_stores_search(
    service: TaskService, store: SqliteTaskStore
) -> None:
    # Rows older than the live window are patched from the changed ids; whether a changed row
    # still matches is the store's search, not a copy of its rules.
    old = [service.submit(action, {}) for action in ("Resize", "resize-image", "a_b", "a%b")]
    service.submit_many("filler", {}, 30)
    model = TaskTableModel(service, page_size=10, live_window=10)
    for needle in ("resize", "RES", "a_", "%"):
        model.set_filter(None, needle)
        while model.canFetchMore(ROOT):
            model.fetchMore(ROOT)
        service.submit_many("filler", {}, 20)  # pushes the loaded rows below the window
        changed = [service.cancel(t.id) if service.get(t.id).status.can_cancel
                   else service.retry(t.id) for t in old]
        model.refresh({t.id: t.seq for t in changed})
        assert model.tasks() == expected(store, model, 1000), needle


def test_feed_coalesces_a_flood_from_another_thread(
    qtbot: QtBot, service: TaskService
) -> None:
    feed = ChangeFeed(service)
    emitted: list[dict[str, int]] = []
    feed.changed.connect(emitted.append)

    def flood() -> None:
        for i in range(300):
            service.submit("job", {"i": i})

    worker = threading.Thread(target=flood)
    worker.start()
    worker.join()  # the GUI loop is not running meanwhile, so no tick can split the batch
    with qtbot.waitSignal(feed.changed):
        pass
    assert len(emitted) == 1 and len(emitted[0]) == 300
    feed.stop()
    service.submit("job", {})
    feed.flush()
    assert len(emitted) == 1  # unsubscribed: nothing more arrives


def test_feed_slows_down_when_refreshing_is_slow(qtbot: QtBot, service: TaskService) -> None:
    clock = iter([10.0, 10.3, 20.0, 20.001])
    feed = ChangeFeed(service, interval_ms=100, max_interval_ms=2000,
                      perf_counter=lambda: next(clock))
    service.submit("job", {})
    feed.flush()  # a 300 ms refresh: wait 1.5 s before the next one
    assert feed.interval_ms == 1500
    service.submit("job", {})
    feed.flush()  # quick again: back to 10 refreshes a second
    assert feed.interval_ms == 100
    feed.stop()
