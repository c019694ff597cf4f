# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
# Fixtures imported from tests.gui_helpers are "redefined" as test parameters:
# ruff: noqa: F811
"""Running tasks in the window: progress in the table and the details, Cancel asking a
running task to stop, and the details pane following a task's log while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QFontInfo, QImage
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from gui.log_view import LogView
from gui.main_window import MainWindow
from gui.status_style import (
    CANCELLING,
    PROGRESS_ROLE,
    STATUS_ROLE,
    badge_colors,
    progress_fill,
)
from gui.task_table_model import Column
from service.task_service import TaskService
from storage import Progress, Task, TaskQuery, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.conftest import claim_task, run_claimed
from tests.gui_helpers import (  # noqa: F401 (fixtures by name)
    WindowFactory,
    activate,
    cell,
    click_row,
    isolated_settings,
    make_window,
    task_in_table,
)

FAST_POLL_MS = 40  # the follower's interval in these tests (POLL_MS is for people)


def running_task(service: TaskService, action: str = "render") -> Task:
    task = claim_task(service, service.submit(action, {"file": "clip.mov"}).id)
    assert task is not None and task.status == TaskStatus.RUNNING
    return task


def report(service: TaskService, task: Task, fraction: float | None, message: str | None
           ) -> None:
    [updated] = service.set_progress([Progress(task.id, task.attempts, fraction, message)])
    assert updated.progress == fraction


def shown(window: MainWindow, task_id: str) -> Task:
    task = task_in_table(window, task_id)
    assert task is not None
    return task


def pixel(image: QImage, point: QPoint) -> QColor:
    return QColor(image.pixel(point))


def close(a: QColor, b: QColor) -> bool:
    pairs = ((a.red(), b.red()), (a.green(), b.green()), (a.blue(), b.blue()))
    return all(abs(x - y) <= 3 for x, y in pairs)


# -- the table --------------------------------------------------------------------------------


def test_a_running_tasks_status_cell_fills_up_with_its_progress(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService
) -> None:
    task = running_task(service)
    queued = service.submit("other", {})
    window = make_window()
    assert cell(window, task.id, Column.STATUS) == "Running"
    assert cell(window, task.id, Column.STATUS, PROGRESS_ROLE) is None
    report(service, task, 0.25, "Encoding 1 of 4")
    qtbot.waitUntil(lambda: cell(window, task.id, Column.STATUS) == "Running 25 %")
    assert cell(window, task.id, Column.STATUS, PROGRESS_ROLE) == 0.25
    assert window.model.tooltip(window.model.row_of(task.id) or 0, Column.STATUS) == (
        "Running: 25 % — Encoding 1 of 4")
    # Rows without progress store none: painting them stays what it was.
    assert cell(window, queued.id, Column.STATUS, PROGRESS_ROLE) is None
    assert cell(window, queued.id, Column.STATUS) == "Queued"

    # The badge is a bar: the done part in a stronger tint than the rest.
    window.table.clearSelection()
    rect = window.table.visualRect(window.model.index(window.model.row_of(task.id) or 0,
                                                      Column.STATUS))
    image = window.table.viewport().grab(rect).toImage()
    y = image.height() // 2
    palette = window.table.palette()
    fill, _ = badge_colors("running", palette)
    done = progress_fill("running", palette)
    assert close(pixel(image, QPoint(10, y)), done)  # inside the first quarter, left of text
    assert close(pixel(image, QPoint(image.width() - 10, y)), fill)

    report(service, task, 1.0, "Done encoding")
    qtbot.waitUntil(lambda: cell(window, task.id, Column.STATUS) == "Running 100 %")
    image = window.table.viewport().grab(rect).toImage()
    assert close(pixel(image, QPoint(image.width() - 10, y)), done)

    # When it ends, the bar goes with the running status.
    finished = run_claimed(service, shown(window, task.id))
    assert finished is not None
    qtbot.waitUntil(lambda: cell(window, task.id, Column.STATUS) == "Completed")
    assert cell(window, task.id, Column.STATUS, PROGRESS_ROLE) is None


def test_cancel_asks_a_running_task_to_stop_without_confirmation(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
) -> None:
    task = running_task(service)
    queued = service.submit("other", {})
    window = make_window()
    actions = window.task_actions
    click_row(qtbot, window, task.id)
    cancel_button = window.details.buttons[1]
    assert cancel_button.defaultAction() is actions.cancel_action
    assert actions.cancel_action.isEnabled() and cancel_button.text() == "Stop"
    activate(qtbot, window)
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)  # no dialog in between

    stored = store.get(task.id)
    assert stored is not None and stored.status == "running" and stored.cancel_requested
    assert window.statusBar().currentMessage() == f"Asked task {task.id[:8]} to stop"
    assert cell(window, task.id, Column.STATUS) == "Cancelling…"
    assert cell(window, task.id, Column.STATUS, STATUS_ROLE) == CANCELLING
    # Asked once is enough: nothing more Cancel could do to it.
    assert not actions.cancel_action.isEnabled()
    assert "Cancelling…" in window.details.view.toPlainText()
    assert window.details.progress_message.text().startswith("Asked to stop")

    click_row(qtbot, window, queued.id)
    assert cancel_button.text() == "Cancel"
    # Its attempt ends: the task ends cancelled.
    assert run_claimed(service, stored) is not None
    qtbot.waitUntil(lambda: cell(window, task.id, Column.STATUS) == "Cancelled")


def test_cancel_of_queued_and_running_tasks_together(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
) -> None:
    running = [running_task(service) for _ in range(2)]
    queued = service.submit("other", {})
    window = make_window()
    window.table.selectAll()
    actions = window.task_actions
    assert actions.cancel_action.text() == "&Cancel"
    actions.cancel_action.trigger()
    assert window.statusBar().currentMessage() == (
        "Cancelled 1 task; Asked 2 tasks to stop")
    assert store.get(queued.id).status == "cancelled"  # type: ignore[union-attr]
    assert all(store.get(t.id).cancel_requested for t in running)  # type: ignore[union-attr]


# -- the details pane -------------------------------------------------------------------------


def test_details_show_a_running_tasks_progress(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService
) -> None:
    task = running_task(service)
    window = make_window()
    details = window.details
    assert not details.progress_box.isVisible()
    click_row(qtbot, window, task.id)
    assert details.progress_box.isVisible()
    assert details.progress_bar.maximum() == 0  # busy: it has not said how far it is
    details.view.selectAll()  # the user selects text to copy it

    report(service, task, 0.625, "Resizing 5 of 8")
    qtbot.waitUntil(lambda: details.progress_bar.value() == 625)
    assert details.progress_bar.text() == "62 %"
    assert details.progress_message.text() == "Resizing 5 of 8"
    # Progress alone does not rebuild the text above: the selection in it stays.
    assert details.view.textCursor().hasSelection()
    service.cancel(task.id)  # what the text shows changes: it is rebuilt
    qtbot.waitUntil(lambda: "Cancelling…" in details.view.toPlainText())
    assert not details.view.textCursor().hasSelection()

    assert run_claimed(service, shown(window, task.id)) is not None
    qtbot.waitUntil(lambda: not details.progress_box.isVisible())


def test_details_follow_a_running_tasks_log(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
) -> None:
    task = running_task(service)
    store.append_log(task.id, b"starting\n")
    window = make_window()
    follower, log = window.details.follower, window.details.log_view
    follower.timer.setInterval(FAST_POLL_MS)
    assert not window.details.log_box.isVisible() and not follower.timer.isActive()
    click_row(qtbot, window, task.id)
    assert window.details.log_box.isVisible()
    assert log.toPlainText() == "starting\n"  # read at once on selection
    assert follower.timer.isActive()
    assert QFontInfo(log.font()).fixedPitch()  # monospaced

    with qtbot.waitSignal(follower.read):
        store.append_log(task.id, b"bad \xff\xfe bytes\r")
    # "\r\n" split between two reads ends one line, not two.
    with qtbot.waitSignal(follower.read):
        store.append_log(task.id, b"\nnext\r\n")
    assert log.toPlainText() == "starting\nbad \ufffd\ufffd bytes\nnext\n"

    # A character split between two reads is decoded once both halves are in.
    with qtbot.waitSignal(follower.read):
        store.append_log(task.id, "caf\u00e9"[:3].encode() + "\u00e9".encode()[:1])
    qtbot.waitUntil(lambda: follower.offset == len(b"starting\nbad \xff\xfe bytes\r\n"
                                                   b"next\r\ncaf\xc3"))
    assert log.toPlainText().endswith("next\ncaf")
    store.append_log(task.id, "\u00e9".encode()[1:] + b" au lait\n")
    qtbot.waitUntil(lambda: log.toPlainText().endswith("caf\u00e9 au lait\n"))
    assert "\ufffd" not in log.toPlainText().split("next")[1]

    # When it ends, the last output is read and polling stops.
    store.append_log(task.id, b"done\n")
    assert run_claimed(service, shown(window, task.id)) is not None
    qtbot.waitUntil(lambda: not follower.timer.isActive())
    assert log.toPlainText().endswith("au lait\ndone\n")


def test_the_log_is_read_only_while_a_running_task_is_selected(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
) -> None:
    task = running_task(service)
    done = service.submit("other", {})
    store.append_log(done.id, b"old output\n")
    window = make_window()
    follower = window.details.follower
    click_row(qtbot, window, done.id)
    assert window.details.log_view.toPlainText() == "old output\n"
    assert not follower.timer.isActive()  # queued: nothing to follow
    click_row(qtbot, window, task.id)
    assert follower.timer.isActive() and follower.task_id == task.id
    assert window.details.log_view.toPlainText() == ""
    window.table.clearSelection()
    assert not follower.timer.isActive() and follower.task_id is None
    assert not window.details.log_box.isVisible()


def test_a_log_that_cannot_be_read_says_so_and_is_read_again(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storage import StorageUnavailableError

    task = service.submit("other", {})
    store.append_log(task.id, b"kept\n")
    window = make_window()
    window.details.follower.timer.setInterval(FAST_POLL_MS)

    def unreadable(*args: object) -> object:
        raise StorageUnavailableError("cannot read the log: disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(store, "read_log", unreadable)
        click_row(qtbot, window, task.id)
        assert "Could not read the log" in window.details.log_title.text()
        assert window.details.follower.timer.isActive()  # tries again
    qtbot.waitUntil(lambda: window.details.log_view.toPlainText() == "kept\n")
    assert window.details.log_title.text() == "<b>Log</b>"
    assert not window.details.follower.timer.isActive()


# -- the log view -----------------------------------------------------------------------------


def test_log_view_keeps_the_end_and_the_users_place(qtbot: QtBot) -> None:
    view = LogView(max_chars=2000)
    qtbot.addWidget(view)
    view.resize(300, 200)
    view.show()
    qtbot.waitExposed(view)
    bar = view.verticalScrollBar()
    for i in range(50):
        view.append_text(f"line {i:03d}\n")
    assert bar.value() == bar.maximum() > 0  # follows the end
    bar.setValue(10)  # the user scrolls up to read
    first_seen = view.firstVisibleBlock().text()
    for i in range(50, 60):
        view.append_text(f"line {i:03d}\n")
    assert bar.value() == 10 and view.firstVisibleBlock().text() == first_seen

    for i in range(60, 400):  # far past the cap: the top goes, whole lines at a time
        view.append_text(f"line {i:03d}\n")
    text = view.toPlainText()
    assert len(text) <= 2000 * 5 // 4 and text.endswith("line 399\n")
    assert text.startswith("line ") and view.trimmed
    assert "line 000" not in text
    # What the user was reading stays put while it still exists; here it was dropped.
    assert bar.value() < bar.maximum()
    bar.setValue(bar.maximum())
    view.append_text("line 400\n")
    assert bar.value() == bar.maximum()


def test_log_view_stays_at_the_end_as_it_is_resized(qtbot: QtBot) -> None:
    view = LogView()
    qtbot.addWidget(view)
    view.resize(400, 200)
    view.show()
    qtbot.waitExposed(view)
    view.append_text("".join(f"line {i:03d}\n" for i in range(40)))  # no wrapping
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() > 0)
    before = bar.maximum()
    view.resize(400, 100)  # fewer lines shown at once: more to scroll
    qtbot.waitUntil(lambda: bar.maximum() > before)
    assert bar.value() == bar.maximum()
    assert view.following


def test_log_view_keeps_the_users_line_while_the_top_is_dropped(qtbot: QtBot) -> None:
    view = LogView(max_chars=4000)
    qtbot.addWidget(view)
    view.resize(300, 200)
    view.show()
    qtbot.waitExposed(view)
    view.append_text("".join(f"line {i:03d}\n" for i in range(400)))  # 3,600 characters
    bar = view.verticalScrollBar()
    bar.setValue(300)
    reading = view.firstVisibleBlock().text()
    view.append_text("".join(f"more {i:03d}\n" for i in range(200)))  # trims ~100 lines
    assert view.trimmed
    assert view.firstVisibleBlock().text() == reading


def test_only_the_last_part_of_a_big_log_is_decoded(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
) -> None:
    task = service.submit("other", {})
    lines = [f"{i:07d} é\n".encode() for i in range(20_000)]  # 200,000 bytes
    store.append_log(task.id, b"".join(lines))
    window = make_window()
    # 9,999 bytes from the end is the second byte of an "é": decoding must not start there.
    window.details.log_view.max_chars = 9_999
    click_row(qtbot, window, task.id)
    text = window.details.log_view.toPlainText()
    assert text.endswith("0019999 é\n") and len(text) <= 9_999
    assert "\ufffd" not in text  # cut at a character, not inside one
    assert "earlier lines not shown" in window.details.log_title.text()


# -- how it looks -----------------------------------------------------------------------------


def test_grab_a_running_task_with_progress_and_log(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, store: SqliteTaskStore,
    tmp_path: Path,
) -> None:
    task = running_task(service)
    for i in range(3):
        service.submit("uppercase", {"text": f"hello {i}"})
    report(service, task, 0.4, "Encoding frame 480 of 1,200")
    store.append_log(task.id, "".join(f"frame {i}: ok ✓\n" for i in range(0, 481, 20)).encode())
    window = make_window()
    window.resize(1280, 800)
    click_row(qtbot, window, task.id)
    qtbot.waitUntil(lambda: window.details.log_view.toPlainText().endswith("ok ✓\n"))
    log = window.details.log_view
    qtbot.waitUntil(lambda: log.height() > 100)  # laid out
    # Text that came before the view had its height still shows its end.
    assert log.verticalScrollBar().value() == log.verticalScrollBar().maximum() > 0
    path = tmp_path / "running.png"
    assert window.grab().save(str(path))
    image = QImage(str(path))
    assert image.width() >= 1000 and not image.isNull()
    QApplication.processEvents()
    assert store.count(TaskQuery(status=TaskStatus.RUNNING)) == 1
