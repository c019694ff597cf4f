"""TaskTableModel: the task table, newest first or in the order the user clicked, read lazily
from the store in pages.

Threads: GUI thread only. The model never hears from workers directly; the window calls
``refresh()`` from its coalescing timer (see gui/change_feed.py) with the ids that changed.

Loading: the first page (``page_size`` rows) is read when the filter or the order is set; the
view asks for more through ``canFetchMore``/``fetchMore`` as the user scrolls, each page read
after the last row loaded (the store's keyset cursor), so a page deep in a million tasks costs
the same as the first and opening a big database reads only one page. Rows are kept in the
order (``sort_key``, the store's own definition of it), so "before" and "after" below mean in
that order; a task whose sort value changes (it started, say) moves.

Refreshing keeps it bounded and simple:
- the *live window*, the first ``min(rows loaded, live_window)`` matching tasks, is read again
  as a whole; this catches every new task (``submit_many`` announces a batch with one event)
  and every status change near the top, where the user looks;
- loaded rows after that window are patched from the changed ids: re-read by id, updated,
  moved, dropped when they no longer match the filter or moved out of the loaded range, or
  inserted when a task starts to match it (e.g. a retried task while "Queued" is shown);
- rows beyond what the user scrolled to are dropped as new tasks push them down, so memory
  stays bounded by what was looked at, however long the window stays open;
- the result is merged into the current rows as row insertions, removals and ``dataChanged``,
  never a reset, so the view keeps its selection, current row and scroll position.

Faults (the database cannot be read right now, or is damaged): every method reads all it needs
before it changes a row, so one that raises leaves the rows exactly as they were. ``set_filter``
and ``refresh`` raise to the window, which keeps what is shown and tries again at the next tick;
``fetchMore``, called by Qt, goes through the window's DatabaseStatus itself, and when it fails
``canFetchMore`` stays true and ``fetch_failed`` tells the window to ask again (Qt asks only as
the scroll position changes, and the user may already be at the bottom).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication, QStandardItem, QStandardItemModel

from gui.database_status import DatabaseStatus, Failed
from gui.formatting import (
    format_attempts,
    format_due,
    format_duration,
    format_time,
    format_timestamp,
    one_line,
    preview,
    short_id,
)
from gui.status_style import (
    PROGRESS_ROLE,
    STATUS_ROLE,
    badge_of,
    format_progress,
    readable_color,
    shown_progress,
    status_color,
    status_label,
)
from service.task_service import TaskService
from storage import Task, TaskQuery, TaskSort, TaskStatus, sort_key

# Rows read at a time: a few screens. Under a flood of new tasks every tick re-makes up to a
# page of rows, so a smaller page keeps the window responsive (100: about 15 ms a tick).
PAGE_SIZE = 100
LIVE_WINDOW = 1000
TOOLTIP_CHARS = 2000

_ROOT = QModelIndex()
Index = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    ID = 0
    ACTION = 1
    STATUS = 2
    DUE = 3
    PRIORITY = 4
    CREATED = 5
    STARTED = 6
    FINISHED = 7
    DURATION = 8
    ATTEMPTS = 9
    OUTPUT = 10


HEADERS: dict[Column, str] = {
    Column.ID: "ID",
    Column.ACTION: "Action",
    Column.STATUS: "Status",
    Column.DUE: "Due",
    Column.PRIORITY: "Priority",
    Column.CREATED: "Created",
    Column.STARTED: "Started",
    Column.FINISHED: "Finished",
    Column.DURATION: "Duration",
    Column.ATTEMPTS: "Attempts",
    Column.OUTPUT: "Result / error",
}

# The columns a click on the header sorts by, and the direction of a first click: times and
# counts newest, longest, most first; names from A.
SORT_COLUMNS: dict[Column, TaskSort] = {
    Column.ACTION: TaskSort.ACTION,
    Column.STATUS: TaskSort.STATUS,
    Column.PRIORITY: TaskSort.PRIORITY,
    Column.CREATED: TaskSort.CREATED,
    Column.STARTED: TaskSort.STARTED,
    Column.FINISHED: TaskSort.FINISHED,
    Column.DURATION: TaskSort.DURATION,
    Column.ATTEMPTS: TaskSort.ATTEMPTS,
}
COLUMN_OF_SORT: dict[TaskSort, Column] = {sort: column for column, sort in SORT_COLUMNS.items()}
_FIRST_ASCENDING = frozenset({TaskSort.ACTION, TaskSort.STATUS})

# Roles beyond Qt's own: the whole Task, and its id (what selections are kept by).
TASK_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignCenter
_NOT_LEFT = frozenset({Column.DURATION, Column.ATTEMPTS, Column.PRIORITY})


def _alignment(column: Column) -> Qt.AlignmentFlag:
    """Where a column's text sits (left unless listed in _NOT_LEFT)."""
    if column == Column.DURATION:
        return _RIGHT
    return _CENTER if column in (Column.ATTEMPTS, Column.PRIORITY) else _LEFT


def _task_query(status: TaskStatus | None, search: str, ids: list[str] | None = None,
                scheduled_after: float | None = None, sort: TaskSort = TaskSort.CREATED,
                descending: bool = True) -> TaskQuery:
    return TaskQuery(status=status, search=search or None, ids=ids,
                     scheduled_after=scheduled_after, sort=sort, descending=descending)


class TaskTableModel(QStandardItemModel):
    def __init__(
        self,
        service: TaskService,
        parent: QObject | None = None,
        *,
        page_size: int = PAGE_SIZE,
        live_window: int = LIVE_WINDOW,
        database: DatabaseStatus | None = None,
    ) -> None:
        super().__init__(0, len(Column), parent)
        for column in Column:
            self.setHeaderData(column, Qt.Orientation.Horizontal, HEADERS[column])
            self.setHeaderData(column, Qt.Orientation.Horizontal, _alignment(column),
                               Qt.ItemDataRole.TextAlignmentRole)
            if column in SORT_COLUMNS:
                first = (Qt.SortOrder.AscendingOrder if SORT_COLUMNS[column] in _FIRST_ASCENDING
                         else Qt.SortOrder.DescendingOrder)
                self.setHeaderData(column, Qt.Orientation.Horizontal, first,
                                   Qt.ItemDataRole.InitialSortOrderRole)
        self._service = service
        self._database = database if database is not None else DatabaseStatus(service, self)
        self._page_size = page_size
        self._live_window = max(live_window, page_size)
        self._status: TaskStatus | None = None
        self._search = ""
        self._scheduled = False  # only queued tasks not due yet
        self._sort = TaskSort.CREATED
        self._descending = True
        self._now = service.now()  # the time the Due cells were written for
        self._rows: list[Task] = []
        self._row_of: dict[str, int] | None = None  # built on demand, dropped on change
        self._has_more = False
        # How many rows the user has asked for (first page plus every fetchMore). New tasks
        # push old rows down; rows beyond this are dropped so that a window left open during
        # a flood does not keep every task ever created in memory.
        self._wanted = page_size
        self._fetch_failed = False
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._error_color = readable_color(status_color("failed"), QGuiApplication.palette())

    # -- filter and queries ---------------------------------------------------------------------

    @property
    def status_filter(self) -> TaskStatus | None:
        return self._status

    @property
    def search(self) -> str:
        return self._search

    @property
    def scheduled(self) -> bool:
        return self._scheduled

    @property
    def sort_order(self) -> tuple[TaskSort, bool]:
        """What the rows are ordered by, and whether descending."""
        return self._sort, self._descending

    def set_sort(self, sort: TaskSort, descending: bool, *, reload: bool = True) -> None:
        """Order the rows by *sort*; reloads the first page (unless not *reload*: before the
        first filter is set). When the read raises, the rows and order stay as they were."""
        previous = self._sort, self._descending
        self._sort, self._descending = sort, descending
        if not reload:
            return
        try:
            self.reload()
        except BaseException:
            self._sort, self._descending = previous
            raise

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Qt's way to ask for an order (a view with sorting enabled calls it): by the store,
        for the columns it can order by; the others are not sortable."""
        sort = SORT_COLUMNS.get(Column(column)) if 0 <= column < len(Column) else None
        if sort is not None:
            self.set_sort(sort, order == Qt.SortOrder.DescendingOrder)

    def _key(self, task: Task) -> tuple[int | float | str, int]:
        return sort_key(self._sort, task)

    def _before(self, a: tuple[int | float | str, int], b: tuple[int | float | str, int]
                ) -> bool:
        """Whether a row at *a* comes before one at *b* in the current order."""
        return a > b if self._descending else a < b

    def set_filter(self, status: TaskStatus | None, search: str = "",
                   scheduled: bool | None = None) -> None:
        """Show tasks in *status* (None: all) matching *search*, only those not due yet when
        *scheduled* (None: as before); reloads the first page. When the read raises, the
        model still shows the previous filter's rows."""
        search = search.strip()
        scheduled = self._scheduled if scheduled is None else scheduled
        now = self._service.now()
        # Read before the reset: a reset begun and never ended leaves views unusable.
        rows = self._service.page(_task_query(status, search, None, now if scheduled else None,
                                              self._sort, self._descending), self._page_size)
        self.beginResetModel()
        # The rows are rebuilt silently: views learn of them from modelReset, all at once.
        blocked = self.blockSignals(True)
        try:
            self._status, self._search, self._scheduled = status, search, scheduled
            self._now = now
            self._rows = rows
            self._has_more = len(self._rows) == self._page_size
            self._wanted = self._page_size
            self._fetch_failed = False
            self._row_of = None
            self.setRowCount(0)
            for task in self._rows:
                self.appendRow(self._items(task))
        finally:
            self.blockSignals(blocked)
        self.endResetModel()

    def reload(self) -> None:
        self.set_filter(self._status, self._search)

    def _filter(self, ids: list[str] | None = None) -> TaskQuery:
        return _task_query(self._status, self._search, ids,
                           self._service.now() if self._scheduled else None,
                           self._sort, self._descending)

    def _query(self, limit: int, after: Task | None = None) -> list[Task]:
        return self._service.page(self._filter(), limit, after)

    # -- lookups --------------------------------------------------------------------------------

    def task_at(self, row: int) -> Task | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, task_id: str) -> int | None:
        if self._row_of is None:
            self._row_of = {task.id: row for row, task in enumerate(self._rows)}
        return self._row_of.get(task_id)

    def tasks(self) -> list[Task]:
        return list(self._rows)

    # -- live updates ---------------------------------------------------------------------------

    def refresh(self, changed: Mapping[str, int] | None = None) -> None:
        """Bring the loaded rows up to date; *changed* maps changed task ids to their seq."""
        self._now = self._service.now()
        rows = self._rows
        limit = min(max(len(rows), self._page_size), self._live_window)
        head = self._query(limit)
        if len(head) < limit:
            # Fewer matches than we asked for: this is every matching task there is.
            new_rows, has_more = head, False
        else:
            boundary = self._key(head[-1])
            if rows and self._before(boundary, self._key(rows[0])):
                # So many new tasks that the window no longer reaches the loaded rows; keeping
                # them would leave a gap, so start over from the window (fetchMore goes on).
                new_rows, has_more = head, True
            else:
                beyond = [t for t in rows if self._before(boundary, self._key(t))]
                last = self._key(rows[-1]) if (rows and self._has_more) else None
                in_head = {t.id for t in head}
                tail = [t for t in self._patched_tail(beyond, last, boundary, changed or {})
                        if t.id not in in_head]
                new_rows = head + tail
                has_more = self._has_more if beyond else True
        if len(new_rows) > self._wanted:
            new_rows, has_more = new_rows[: self._wanted], True
        self._merge(new_rows)
        self._has_more = has_more

    def _patched_tail(
        self, tail: list[Task], last: tuple[int | float | str, int] | None,
        boundary: tuple[int | float | str, int], changed: Mapping[str, int]
    ) -> list[Task]:
        """Apply changes to loaded rows after *boundary* (the live window's last row) up to
        *last* (None: to the end), which the window missed."""
        def in_range(key: tuple[int | float | str, int]) -> bool:
            return self._before(boundary, key) and (last is None or not self._before(last, key))

        if self._sort == TaskSort.CREATED:
            # A task's place in this order never changes: only ids in the range can matter.
            ids = [task_id for task_id, seq in changed.items() if in_range((seq, seq))]
        else:
            # A changed task may move into the range, or out of it, from anywhere.
            ids = list(changed)
        if not ids:
            return tail
        by_id = {t.id: t for t in tail}
        for task_id in ids:
            by_id.pop(task_id, None)
        # Re-read through the store's own filter, so the rows kept are exactly the rows a
        # fresh query would show.
        for fresh in self._service.page(self._filter(ids), len(ids)):
            if in_range(self._key(fresh)):
                by_id[fresh.id] = fresh
        return sorted(by_id.values(), key=self._key, reverse=self._descending)

    def _merge(self, new_rows: Sequence[Task]) -> None:
        """Turn the rows into *new_rows* (both in the current order) with minimal row
        signals. A task that moved is removed where it was and inserted where it is."""
        rows = self._rows
        key, before = self._key, self._before
        i = j = 0
        first_changed, last_changed = -1, -1
        while i < len(rows) or j < len(new_rows):
            if i < len(rows) and (j == len(new_rows) or before(key(rows[i]), key(new_rows[j]))):
                end = i
                while end < len(rows) and (j == len(new_rows)
                                           or before(key(rows[end]), key(new_rows[j]))):
                    end += 1
                del rows[i:end]
                self._row_of = None
                self.removeRows(i, end - i)
            elif i == len(rows) or before(key(new_rows[j]), key(rows[i])):
                end = j
                while end < len(new_rows) and (i == len(rows)
                                               or before(key(new_rows[end]), key(rows[i]))):
                    end += 1
                rows[i:i] = new_rows[j:end]
                self._row_of = None
                for k, task in enumerate(new_rows[j:end]):
                    self.insertRow(i + k, self._items(task))
                i += end - j
                j = end
            else:
                if rows[i] != new_rows[j]:
                    self._update(i, rows[i], new_rows[j])
                    rows[i] = new_rows[j]
                    if first_changed < 0:
                        first_changed = i
                    last_changed = i
                i += 1
                j += 1
        if first_changed >= 0:
            self.dataChanged.emit(
                self.index(first_changed, 0),
                self.index(last_changed, len(Column) - 1),
            )

    def refresh_due(self) -> bool:
        """Rewrite the Due cells whose text moved on with the clock ("due in 4 min" → "3
        min"); True when the scheduled filter shows a task that is due now, so that the
        caller reloads (it no longer belongs)."""
        self._now = now = self._service.now()
        first, last = -1, -1
        blocked = self.blockSignals(True)
        try:
            for row, task in enumerate(self._rows):
                if task.status != TaskStatus.QUEUED:
                    continue
                item = self.item(row, Column.DUE)
                text = format_due(task, now)
                if item is not None and item.text() != text:
                    item.setText(text)
                    first = row if first < 0 else first
                    last = row
        finally:
            self.blockSignals(blocked)
        if first >= 0:
            self.dataChanged.emit(self.index(first, Column.DUE), self.index(last, Column.DUE))
        return self._scheduled and any(t.run_after <= now for t in self._rows)

    # -- Qt model interface ---------------------------------------------------------------------
    # Cells live in QStandardItems, so painting reads them in C++: a Python data() would be
    # called for every role of every visible cell on every repaint, each call waiting for the
    # interpreter lock that API and worker threads hold most of the time under load.

    def canFetchMore(self, parent: Index) -> bool:
        return not parent.isValid() and self._has_more

    @property
    def fetch_failed(self) -> bool:
        """The last fetchMore could not read its page; the rows are as they were before it."""
        return self._fetch_failed

    def fetchMore(self, parent: Index) -> None:
        if parent.isValid() or not self._has_more:
            return
        before = self._rows[-1] if self._rows else None
        self._now = self._service.now()
        # Qt calls this from its own event handling, where an exception would only be printed.
        page = self._database.call(
            "load more tasks", lambda: self._query(self._page_size, before)
        )
        self._fetch_failed = isinstance(page, Failed)
        if isinstance(page, Failed):
            return  # _has_more stays True: the page is asked for again
        self._has_more = len(page) == self._page_size
        # A loaded row that changed since it was read may come again after its old place;
        # it stays where it is until the next refresh moves it.
        page = [task for task in page if self.row_of(task.id) is None]
        if not page:
            return
        self._rows.extend(page)
        self._wanted = len(self._rows)
        self._row_of = None
        for task in page:
            self.appendRow(self._items(task))

    def _items(self, task: Task) -> list[QStandardItem]:
        """A row of cells showing *task*. Tooltips are not stored: the view asks tooltip()
        when one is wanted, which keeps a refresh under a flood of changes cheap."""
        items = []
        for column in Column:
            # Default flags (selectable, enabled; editable, but the view never edits).
            item = QStandardItem(self._display(task, column))
            if column in _NOT_LEFT:
                item.setData(_alignment(column), Qt.ItemDataRole.TextAlignmentRole)
            items.append(item)
        first = items[Column.ID]
        first.setData(self._mono, Qt.ItemDataRole.FontRole)
        first.setData(task, TASK_ROLE)
        first.setData(task.id, ID_ROLE)
        status = items[Column.STATUS]
        badge = badge_of(task)
        status.setData(badge, STATUS_ROLE)
        status.setData(status_color(badge), Qt.ItemDataRole.ForegroundRole)
        fraction = shown_progress(task)
        if fraction is not None:  # left unset otherwise: most rows never have any
            status.setData(fraction, PROGRESS_ROLE)
        if task.error:
            items[Column.OUTPUT].setData(self._error_color, Qt.ItemDataRole.ForegroundRole)
        return items

    def _update(self, row: int, old: Task, new: Task) -> None:
        """Show *new* instead of *old* in *row*, touching only the cells that change, and
        silently: the caller emits one dataChanged for all the rows it changed."""
        blocked = self.blockSignals(True)
        try:
            for column in Column:
                text = self._display(new, column)
                item = self.item(row, column)
                if item is not None and text != self._display(old, column):
                    item.setText(text)
            first = self.item(row, Column.ID)
            if first is not None:
                first.setData(new, TASK_ROLE)
            status = self.item(row, Column.STATUS)
            if status is not None:
                badge = badge_of(new)
                if badge != badge_of(old):
                    status.setData(badge, STATUS_ROLE)
                    status.setData(status_color(badge), Qt.ItemDataRole.ForegroundRole)
                fraction = shown_progress(new)
                if fraction != shown_progress(old):
                    status.setData(fraction, PROGRESS_ROLE)  # None unsets it
            output = self.item(row, Column.OUTPUT)
            if output is not None and bool(new.error) != bool(old.error):
                output.setData(self._error_color if new.error else None,
                               Qt.ItemDataRole.ForegroundRole)
        finally:
            self.blockSignals(blocked)

    def tooltip(self, row: int, column: int) -> str | None:
        """The tooltip of a cell, made when asked (see TaskTableView.viewportEvent)."""
        task = self.task_at(row)
        if task is None or not 0 <= column < len(Column):
            return None
        return self._tooltip(task, Column(column))

    def _display(self, task: Task, column: Column) -> str:
        match column:
            case Column.ID:
                return short_id(task.id)
            case Column.ACTION:
                return task.action
            case Column.STATUS:
                return status_label(task)
            case Column.DUE:
                return format_due(task, self._now)
            case Column.PRIORITY:
                return str(task.priority)
            case Column.CREATED:
                return format_time(task.created_at)
            case Column.STARTED:
                return format_time(task.started_at)
            case Column.FINISHED:
                return format_time(task.processed_at)
            case Column.DURATION:
                return format_duration(task.duration)
            case Column.ATTEMPTS:
                return format_attempts(task)
            case Column.OUTPUT:
                return preview(task)

    @staticmethod
    def _tooltip(task: Task, column: Column) -> str | None:
        match column:
            case Column.ID:
                return task.id
            case Column.STATUS:
                return _status_tooltip(task)
            case Column.CREATED:
                return format_timestamp(task.created_at)
            case Column.DUE:
                if task.status != TaskStatus.QUEUED:
                    return None
                waits = f"waits for {', '.join(task.after)}" if task.waiting else ""
                due = f"not before {format_timestamp(task.run_after)}"
                return "; ".join(t for t in (due, waits) if t)
            case Column.STARTED:
                return format_timestamp(task.started_at) if task.started_at else None
            case Column.FINISHED:
                return format_timestamp(task.processed_at) if task.processed_at else None
            case Column.OUTPUT:
                text = preview(task)
                return one_line(text, TOOLTIP_CHARS) if text else None
            case _:
                return None


def _status_tooltip(task: Task) -> str | None:
    """What a running task last said of its progress, or that it was asked to stop."""
    if task.status != TaskStatus.RUNNING:
        return None
    if task.cancel_requested:
        return "Asked to stop: it ends cancelled when its attempt ends"
    fraction = shown_progress(task)
    parts = [format_progress(fraction) if fraction is not None else "", task.progress_message]
    text = " — ".join(p for p in parts if p)
    return f"Running: {text}" if text else None
