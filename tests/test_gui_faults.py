# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""The window under the faults the API answers with a 503 or a 500, injected as in
test_faults.py and test_fault_locks.py, on real SQLite files:

- ``full``: the disk is full. The file may not grow (``PRAGMA max_page_count`` on the store's
  write connection), so SQLite itself refuses new rows; rows rewritten in place (Retry, Cancel)
  need no new page, but on a real full disk their commit still fails, for want of room in the
  WAL, and the write connection's COMMIT fails here the same way.
- ``locked``: another connection holds ``BEGIN EXCLUSIVE``; writes wait out the busy timeout
  (cut to FAST_BUSY_MS for the test) and fail with "database is locked".
- ``damaged``: every page but the first (header and schema) overwritten with garbage, as
  test_fault_locks.py does to a running Taskdesk; reads and writes meet SQLite's "database disk
  image is malformed". Removing the fault puts the bytes back, but the store knows the file was
  damaged and refuses writes for the rest of the run, by design: the window must go on showing
  that, and refusing, while its reads work again.

In WAL mode neither a full disk nor another program's lock stops reads, so where a test needs
reads to fail under ``full`` or ``locked``, the store's read methods raise what the store raises
when SQLite cannot read (StorageUnavailableError, "database is locked"); ``damaged`` breaks
reads for real.

Each test checks that nothing escaped into Qt's event loop (pytest-qt fails a test on an
exception in a slot, and stderr must hold no traceback), that the status bar shows the
problem, that an action the user took says what failed and that nothing was changed, that the
database is unchanged, and that once the fault is removed the window works again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, QSettings, Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from gui.main_window import AppInfo, MainWindow
from service.actions import default_registry
from service.task_service import TaskService
from storage import DatabaseDamagedError, StorageUnavailableError, Task, TaskStatus
from storage.sqlite import SqliteTaskStore
from tests.action_helpers import python_action
from tests.conftest import Client, claim_task, run_claimed, snapshot
from tests.gui_helpers import isolated_settings  # noqa: F401 (an autouse fixture, by name)

BIG = {"text": "x" * 20_000}  # needs new database pages, so a capped file refuses it
FAST_BUSY_MS = 250
PAGE_SIZE = 4096  # SQLite's default, which Taskdesk keeps
GARBAGE = bytes([0xDE, 0xAD, 0xBE, 0xEF])
READS = ("page", "get", "counts", "count_by_status", "count", "list_json")


# -- faults ---------------------------------------------------------------------------------


class Fault:
    """A fault in the store's database: injected, and removed again (``repair``)."""

    name = ""
    cause = ""  # SQLite's words for it, as the store's messages quote them
    headline = "⚠ Database unavailable"
    writes_resume = True  # after repair(); a damaged database is never written to again

    def __init__(self, store: SqliteTaskStore) -> None:
        self.store = store
        self._patches = pytest.MonkeyPatch()

    def break_writes(self) -> None:
        raise NotImplementedError

    def break_reads(self) -> None:
        """Writes fail as in break_writes, and reads fail too."""
        self.break_writes()

        def unreadable(*args: Any, **kwargs: Any) -> Any:
            raise StorageUnavailableError(
                f"cannot read database {self.store.path}: database is locked")

        for name in READS:
            self._patches.setattr(self.store, name, unreadable)

    @property
    def read_cause(self) -> str:
        return "database is locked"

    def repair(self) -> None:
        self._patches.undo()


class _NoRoomConnection:
    """The store's write connection on a full disk: every commit fails, and SQLite rolls the
    transaction back, as it does when it cannot append to the WAL."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.strip().upper() == "COMMIT":
            self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class FullDisk(Fault):
    name = "full"
    cause = "database or disk is full"

    def _writer_conn(self) -> sqlite3.Connection:
        # Straight on the write connection, not through the store: a write through the store
        # that succeeds would itself clear the problem the window is meant to show.
        conn = self.store._writer._conn
        assert isinstance(conn, sqlite3.Connection)
        return conn

    def break_writes(self) -> None:
        conn = self._writer_conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        self._patches.setattr(self.store._writer, "_conn", _NoRoomConnection(conn))

    def repair(self) -> None:
        super().repair()
        self._writer_conn().execute("PRAGMA max_page_count = 4294967294")


class LockedDatabase(Fault):
    name = "locked"
    cause = "database is locked"

    def __init__(self, store: SqliteTaskStore) -> None:
        super().__init__(store)
        self._holder: sqlite3.Connection | None = None

    def break_writes(self) -> None:
        self._holder = sqlite3.connect(self.store.path, isolation_level=None, timeout=10)
        self._holder.execute("BEGIN EXCLUSIVE")

    def repair(self) -> None:
        super().repair()
        if self._holder is not None:
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None


class DamagedDatabase(Fault):
    name = "damaged"
    cause = "database disk image is malformed"
    headline = "⚠ Database damaged"
    writes_resume = False

    def __init__(self, store: SqliteTaskStore) -> None:
        super().__init__(store)
        self._saved: bytes | None = None

    def _touch(self) -> None:
        """Commit a change to page 1 alone (the header, left whole), so that every connection
        drops its cached pages and reads the file again at its next transaction."""
        conn = sqlite3.connect(self.store.path, isolation_level=None, timeout=10)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(f"PRAGMA user_version = {version}")
        finally:
            conn.close()

    def break_writes(self) -> None:
        conn = sqlite3.connect(self.store.path, isolation_level=None, timeout=10)
        try:  # every page in the file itself, none left only in the WAL
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        finally:
            conn.close()
        content = self.store.path.read_bytes()
        assert len(content) % PAGE_SIZE == 0 and len(content) > PAGE_SIZE
        self._saved = content[PAGE_SIZE:]
        with open(self.store.path, "r+b") as f:
            f.seek(PAGE_SIZE)
            f.write(GARBAGE * (len(self._saved) // len(GARBAGE)))
        self._touch()

    def break_reads(self) -> None:
        self.break_writes()  # the damage breaks both

    @property
    def read_cause(self) -> str:
        return self.cause

    def repair(self) -> None:
        super().repair()
        if self._saved is not None:
            with open(self.store.path, "r+b") as f:
                f.seek(PAGE_SIZE)
                f.write(self._saved)
            self._saved = None
            self._touch()


FAULTS: dict[str, Callable[[SqliteTaskStore], Fault]] = {
    "full": FullDisk, "locked": LockedDatabase, "damaged": DamagedDatabase,
}


@pytest.fixture(params=list(FAULTS))
def fault(
    request: pytest.FixtureRequest, store: SqliteTaskStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fault]:
    monkeypatch.setattr("storage.sqlite.writer.BUSY_TIMEOUT_MS", FAST_BUSY_MS)
    store._write(lambda conn: None)  # opens the write connection the faults work on
    made = FAULTS[request.param](store)
    yield made
    made.repair()  # also when the test failed halfway: the store must close


# -- the window -----------------------------------------------------------------------------

WindowFactory = Callable[..., MainWindow]


def boom(data: dict[str, Any]) -> Any:
    raise RuntimeError("boom")


@pytest.fixture
def svc(store: SqliteTaskStore) -> TaskService:
    """A service whose ``boom`` action fails its one attempt: tasks to retry."""
    registry = default_registry()
    registry.register(python_action("boom", boom, lambda data: None, "fails"))
    return TaskService(store, registry, max_attempts=1)


@pytest.fixture
def make_window(
    qtbot: QtBot, svc: TaskService, tmp_path: Path, db_path: Path
) -> Iterator[WindowFactory]:
    windows: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)

    def make(service: TaskService | None = None) -> MainWindow:
        info = AppInfo("9.9.9", db_path, None, None, None)
        window = MainWindow(service or svc, None, info, settings=settings)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()


@pytest.fixture
def boxes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(title, text) of every message box the window opens; none is really shown."""
    shown: list[tuple[str, str]] = []

    class FakeMessageBox:
        Icon = QMessageBox.Icon
        StandardButton = QMessageBox.StandardButton

        def __init__(self, icon: Any, title: str, text: str, *args: Any) -> None:
            self.title, self.text = title, text

        def setAttribute(self, *args: Any) -> None:
            pass

        def open(self) -> None:
            shown.append((self.title, self.text))

        def exec(self) -> int:
            pytest.fail("a modal message box would block the window")

    monkeypatch.setattr("gui.main_window.QMessageBox", FakeMessageBox)
    return shown


def problem_shown(window: MainWindow) -> str | None:
    """The status bar's problem indicator: its full text when visible, else None."""
    label = window.status.problem_label
    return label.toolTip() if label.isVisible() else None


def shown_status(window: MainWindow, task_id: str) -> str | None:
    row = window.model.row_of(task_id)
    task = None if row is None else window.model.task_at(row)
    return None if task is None else task.status


def click_row(qtbot: QtBot, window: MainWindow, task_id: str) -> None:
    row = window.model.row_of(task_id)
    assert row is not None
    rect = window.table.visualRect(window.model.index(row, 1))
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, rect.center())


def failed_task(svc: TaskService) -> Task:
    started = claim_task(svc, svc.submit("boom", {"n": 1}).id)
    assert started is not None
    done = run_claimed(svc, started)
    assert done is not None and done.status == TaskStatus.FAILED
    return done


def in_another_thread(change: Callable[[], object]) -> BaseException | None:
    """Run *change* on a thread of its own, as the API or a worker would; what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            change()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return raised[0] if raised else None


def add_behind_the_windows_back(db: Path) -> None:
    """Another program adds a queued task: no event reaches the window, only its timers can
    notice (the counts are kept by triggers)."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        conn.execute("INSERT INTO tasks (id, action, data, status, max_attempts, created_at) "
                     "VALUES ('from-elsewhere', 'job', '{}', 'queued', 3, 0)")
    finally:
        conn.close()


def assert_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


def assert_shows(window: MainWindow, fault: Fault, cause: str) -> None:
    shown = problem_shown(window)
    assert shown is not None, "the status bar does not show the problem"
    assert shown.startswith(fault.headline) and cause in shown, shown
    assert window.status.problem_label.text().startswith("⚠")


# -- actions the user takes -------------------------------------------------------------------


def test_retry(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, store: SqliteTaskStore,
    fault: Fault, boxes: list[tuple[str, str]], capfd: pytest.CaptureFixture[str],
) -> None:
    task = failed_task(svc)
    window = make_window()
    click_row(qtbot, window, task.id)
    retry_button = window.details.buttons[0]
    assert retry_button.defaultAction() is window.task_actions.retry_action
    before = snapshot(store)

    fault.break_writes()
    qtbot.mouseClick(retry_button, Qt.MouseButton.LeftButton)
    [(title, text)] = boxes
    assert title == "Retry failed"
    assert f"Could not retry task {task.id[:8]}" in text and fault.cause in text
    assert "Nothing was changed" in text
    assert_shows(window, fault, fault.cause)
    assert shown_status(window, task.id) == "failed"
    assert window.table.selected_ids() == [task.id]  # the window goes on as it was

    fault.repair()
    assert snapshot(store) == before
    qtbot.mouseClick(retry_button, Qt.MouseButton.LeftButton)
    if fault.writes_resume:
        assert shown_status(window, task.id) == "queued"
        assert store.get(task.id).status == "queued"  # type: ignore[union-attr]
        assert problem_shown(window) is None
        assert len(boxes) == 1
    else:
        assert len(boxes) == 2 and "damaged" in boxes[1][1]
        assert snapshot(store) == before
        assert_shows(window, fault, fault.cause)
    assert_no_traceback(capfd)


def test_cancel(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, store: SqliteTaskStore,
    fault: Fault, boxes: list[tuple[str, str]], capfd: pytest.CaptureFixture[str],
) -> None:
    tasks = [svc.submit("uppercase", {"text": str(i)}) for i in range(2)]
    window = make_window()
    click_row(qtbot, window, tasks[0].id)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    before = snapshot(store)

    fault.break_writes()
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)
    [(title, text)] = boxes
    assert title == "Cancel failed"
    assert f"Could not cancel task {tasks[0].id[:8]}" in text and fault.cause in text
    assert "Nothing was changed" in text
    assert_shows(window, fault, fault.cause)
    assert shown_status(window, tasks[0].id) == "queued"

    fault.repair()
    assert snapshot(store) == before
    qtbot.keyClick(window.table, Qt.Key.Key_Delete)
    if fault.writes_resume:
        assert shown_status(window, tasks[0].id) == "cancelled"
        assert store.get(tasks[0].id).status == "cancelled"  # type: ignore[union-attr]
        assert problem_shown(window) is None
    else:
        assert len(boxes) == 2 and fault.cause in boxes[1][1]
        assert snapshot(store) == before
    assert_no_traceback(capfd)


def test_submit(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore, fault: Fault,
    boxes: list[tuple[str, str]], capfd: pytest.CaptureFixture[str],
) -> None:
    window = make_window()
    compose = window.compose
    compose.json_edit.setPlainText(json.dumps(BIG))
    assert compose.submit_button.isEnabled()
    before = snapshot(store)

    fault.break_writes()
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    message = compose.message_label.text()
    assert message.startswith("Could not submit the task") and fault.cause in message
    assert "Nothing was changed" in message
    assert compose.message_label.property("kind") == "error"
    assert_shows(window, fault, fault.cause)
    assert window.model.rowCount() == 0
    assert boxes == []  # inline, beside the button: the form keeps what was typed

    fault.repair()
    assert snapshot(store) == before
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    if fault.writes_resume:
        assert compose.message_label.text().startswith("Submitted task")
        assert window.model.rowCount() == 1
        assert problem_shown(window) is None
    else:
        assert compose.message_label.text().startswith("Could not submit the task")
        assert snapshot(store) == before
    assert_no_traceback(capfd)


# -- refreshes --------------------------------------------------------------------------------


def test_change_feed_refresh(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, store: SqliteTaskStore,
    fault: Fault, capfd: pytest.CaptureFixture[str],
) -> None:
    tasks = [svc.submit("uppercase", {"text": str(i)}) for i in range(3)]
    window = make_window()
    rows = window.model.tasks()
    counts = window.filter_bar.count_text(TaskStatus.CANCELLED)

    # Another thread changes a task; by the window's next tick the database cannot be read.
    assert in_another_thread(lambda: svc.cancel(tasks[0].id)) is None
    fault.break_reads()
    qtbot.waitUntil(lambda: problem_shown(window) is not None)
    assert_shows(window, fault, fault.read_cause)
    assert window.model.tasks() == rows  # the last good rows and counts, not an empty table
    assert window.filter_bar.count_text(TaskStatus.CANCELLED) == counts
    # A change another thread tries now fails there (the API would answer 503 or 500).
    failure = in_another_thread(lambda: svc.cancel(tasks[1].id))
    assert isinstance(failure, StorageUnavailableError | DatabaseDamagedError), failure

    fault.repair()
    # No event comes after the fault: the change the failed tick missed must be shown anyway.
    qtbot.waitUntil(lambda: shown_status(window, tasks[0].id) == "cancelled")
    assert window.filter_bar.count_text(TaskStatus.CANCELLED).endswith(" 1")
    assert shown_status(window, tasks[1].id) == "queued"
    if fault.writes_resume:
        # The other thread's failed write is still the store's problem, shown until a write
        # succeeds: reads working again says nothing about a full disk.
        assert_shows(window, fault, fault.cause)
        assert in_another_thread(lambda: svc.cancel(tasks[1].id)) is None
        qtbot.waitUntil(lambda: shown_status(window, tasks[1].id) == "cancelled")
        qtbot.waitUntil(lambda: problem_shown(window) is None)
    else:
        assert_shows(window, fault, fault.cause)
        assert isinstance(in_another_thread(lambda: svc.cancel(tasks[1].id)),
                          DatabaseDamagedError)
    assert_no_traceback(capfd)


def test_stats_refresh(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, db_path: Path, fault: Fault,
    capfd: pytest.CaptureFixture[str],
) -> None:
    svc.submit_many("job", {}, 2)
    window = make_window()
    queue_label = window.status.queue_label
    assert queue_label.text() == "Queued 2"

    fault.break_reads()
    # Nothing changes, so only the 1 s stats tick reads, and fails.
    qtbot.waitUntil(lambda: problem_shown(window) is not None)
    assert_shows(window, fault, fault.read_cause)
    assert queue_label.text() == "Queued 2"

    fault.repair()
    add_behind_the_windows_back(db_path)
    qtbot.waitUntil(lambda: queue_label.text() == "Queued 3")
    if fault.writes_resume:
        assert problem_shown(window) is None
    else:
        assert_shows(window, fault, fault.cause)
    assert_no_traceback(capfd)


def test_fetch_more_while_scrolling(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, fault: Fault,
    capfd: pytest.CaptureFixture[str],
) -> None:
    svc.submit_many("job", {}, 250)
    window = make_window()
    model = window.model
    assert model.rowCount() == 100

    fault.break_reads()
    window.table.scrollToBottom()  # Qt asks the model for the next page
    assert_shows(window, fault, fault.read_cause)
    assert model.fetch_failed
    # A stats tick passes while the fault lasts, and with it whatever Qt asks for on its own
    # (a relayout for the status bar's new label makes the view look for more, say).
    with qtbot.waitSignal(window.stats_timer.timeout, timeout=3000):
        pass
    assert model.rowCount() == 100 and model.canFetchMore(QModelIndex())

    fault.repair()
    # The user is still at the bottom: the page is asked for again without a scroll.
    qtbot.waitUntil(lambda: model.rowCount() == 200)
    assert not model.fetch_failed
    window.table.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 250)
    assert not model.canFetchMore(QModelIndex())
    if fault.writes_resume:
        assert problem_shown(window) is None
    assert_no_traceback(capfd)


def test_filter_and_search_change(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, fault: Fault,
    capfd: pytest.CaptureFixture[str],
) -> None:
    alpha = [svc.submit("alpha", {"i": i}) for i in range(3)]
    beta = svc.submit("beta", {})
    svc.cancel(alpha[1].id)
    svc.cancel(beta.id)
    window = make_window()
    bar = window.filter_bar
    rows = window.model.tasks()
    assert len(rows) == 4

    fault.break_reads()
    qtbot.mouseClick(bar.button(TaskStatus.CANCELLED), Qt.MouseButton.LeftButton)
    assert_shows(window, fault, fault.read_cause)
    assert window.model.tasks() == rows and window.model.status_filter is None
    qtbot.keyClicks(bar.search_edit, "alp")
    qtbot.keyClick(bar.search_edit, Qt.Key.Key_Return)  # searches at once
    assert window.model.tasks() == rows and window.model.search == ""
    # The model is not left halfway through a reset: the view still works on it.
    window.table.selectRow(2)
    assert window.table.selected_ids() == [rows[2].id]

    fault.repair()
    qtbot.waitUntil(lambda: window.model.status_filter == TaskStatus.CANCELLED)
    assert window.model.search == "alp"
    assert [t.id for t in window.model.tasks()] == [alpha[1].id]
    assert bar.count_text(TaskStatus.CANCELLED) == "Cancelled  1"
    if fault.writes_resume:
        assert problem_shown(window) is None
    assert_no_traceback(capfd)


# -- a fault met elsewhere -------------------------------------------------------------------


def test_window_opens_on_a_database_it_cannot_read(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, fault: Fault,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ids = svc.submit_many("job", {}, 3)
    fault.break_reads()
    # Before the window opens, a worker or the API met the fault too.
    assert in_another_thread(lambda: svc.submit("uppercase", BIG)) is not None
    window = make_window()
    assert_shows(window, fault, fault.read_cause)
    assert window.model.rowCount() == 0

    fault.repair()
    qtbot.waitUntil(lambda: [t.id for t in window.model.tasks()] == ids[::-1])
    assert window.filter_bar.count_text(None) == "All  3"
    # The other thread's failed write is still the store's problem until a write succeeds.
    assert_shows(window, fault, fault.cause)
    if fault.writes_resume:
        assert in_another_thread(lambda: svc.submit("uppercase", BIG)) is None
        qtbot.waitUntil(lambda: problem_shown(window) is None, timeout=3000)
    assert_no_traceback(capfd)


def test_problem_met_before_the_window_opened_is_shown_at_once(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, fault: Fault,
    capfd: pytest.CaptureFixture[str],
) -> None:
    fault.break_writes()
    assert in_another_thread(lambda: svc.submit("uppercase", BIG)) is not None
    window = make_window()
    assert_shows(window, fault, fault.cause)  # not a second later
    fault.repair()
    assert_no_traceback(capfd)


# -- a fault met by the API -----------------------------------------------------------------


def test_fault_the_api_reports_is_shown_in_the_window(
    qtbot: QtBot, make_window: WindowFactory, service: TaskService, fault: Fault,
    api_factory: Callable[..., Client], capfd: pytest.CaptureFixture[str],
) -> None:
    client = api_factory()
    window = make_window(service)
    fault.break_writes()
    refused = client.post("/tasks", {"action": "uppercase", "data": BIG})
    assert refused.status == (500 if isinstance(fault, DamagedDatabase) else 503), refused.body
    # The window did nothing; its stats tick reads the store's problem.
    qtbot.waitUntil(lambda: problem_shown(window) is not None, timeout=3000)
    assert_shows(window, fault, fault.cause)

    fault.repair()
    again = client.post("/tasks", {"action": "uppercase", "data": BIG})
    if fault.writes_resume:
        assert again.status == 202
        qtbot.waitUntil(lambda: problem_shown(window) is None, timeout=3000)
        qtbot.waitUntil(lambda: window.model.rowCount() == 1)
    else:
        assert again.status == 500
        assert_shows(window, fault, fault.cause)
    assert_no_traceback(capfd)


# -- not a database fault: a bug ------------------------------------------------------------


def test_a_bug_in_an_action_is_reported_not_printed(
    qtbot: QtBot, make_window: WindowFactory, svc: TaskService, store: SqliteTaskStore,
    boxes: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # The API answers such a thing with a 500 "internal server error".
    task = failed_task(svc)
    window = make_window()
    click_row(qtbot, window, task.id)

    def bug(task_ids: object) -> object:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(svc, "retry_many", bug)
        window.task_actions.retry_action.trigger()
    [(title, text)] = boxes
    assert title == "Retry failed"
    assert f"Could not retry task {task.id[:8]}: internal error (RuntimeError: a bug)" in text
    assert "Nothing was changed" not in text  # a bug may strike after the write: we cannot say
    shown = problem_shown(window)
    assert shown is not None and shown.startswith("⚠ Internal error"), shown

    window.task_actions.retry_action.trigger()
    assert shown_status(window, task.id) == "queued"
    assert problem_shown(window) is None
    assert_no_traceback(capfd)
