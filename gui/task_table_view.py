"""TaskTableView: the QTableView of tasks, with sensible column widths, a status badge column,
a hint when it is empty, and selection read and restored by task id.

Threads: GUI thread only.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import (
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QHelpEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QToolTip, QWidget

from gui.status_style import CANCELLING_LABEL, StatusBadgeDelegate
from gui.task_table_model import COLUMN_OF_SORT, SORT_COLUMNS, Column, TaskTableModel
from storage import Task, TaskSort


class TaskTableView(QTableView):
    # The user clicked a header to order by (TaskSort, descending); the window applies it
    # (reading the first page may fail) and the indicator follows with show_sort.
    sort_requested = Signal(object, bool)

    def __init__(self, model: TaskTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self.setModel(model)
        self.placeholder = ""
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)  # tasks are read-only
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setCornerButtonEnabled(False)
        # Tab leaves the table (arrow keys move between rows), so keyboard users are not
        # trapped in its cells.
        self.setTabKeyNavigation(False)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.setItemDelegateForColumn(Column.STATUS, StatusBadgeDelegate(self))

        metrics = self.fontMetrics()
        vertical = self.verticalHeader()
        vertical.hide()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(metrics.height() + 12)

        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(True)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setMinimumSectionSize(40)
        pad = 18
        time_width = metrics.horizontalAdvance("2024-12-31") + pad
        widths = {
            Column.ID: metrics.horizontalAdvance("00000000") + pad,
            Column.ACTION: metrics.horizontalAdvance("render-video") + pad,
            # The widest badge: a running task's progress, or "Cancelling…".
            Column.STATUS: max(metrics.horizontalAdvance(label) for label in
                               ("Completed", "Running 100 %", CANCELLING_LABEL)) + 2 * pad + 6,
            Column.DUE: metrics.horizontalAdvance("due in 59 min") + pad,
            Column.PRIORITY: metrics.horizontalAdvance("Priority") + pad,
            Column.CREATED: time_width,
            Column.STARTED: time_width,
            Column.FINISHED: time_width,
            Column.DURATION: metrics.horizontalAdvance("99.99 s") + pad,
            Column.ATTEMPTS: metrics.horizontalAdvance("Attempts") + pad,
        }
        for column, width in widths.items():
            header.resizeSection(column, width)
        # Clicking a header orders by that column through the store (not Qt's sorting of the
        # rows loaded): a first click in the column's natural direction (the model's
        # InitialSortOrderRole), the next ones flip it.
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        self.show_sort(*model.sort_order)
        header.sortIndicatorChanged.connect(self._on_sort_indicator)

    def show_sort(self, sort: TaskSort, descending: bool) -> None:
        """Put the header's sort indicator on *sort*'s column."""
        header = self.horizontalHeader()
        blocked = header.blockSignals(True)
        try:
            header.setSortIndicator(COLUMN_OF_SORT[sort], Qt.SortOrder.DescendingOrder
                                    if descending else Qt.SortOrder.AscendingOrder)
        finally:
            header.blockSignals(blocked)
        header.viewport().update()

    def _on_sort_indicator(self, section: int, order: Qt.SortOrder) -> None:
        sort = SORT_COLUMNS.get(Column(section)) if 0 <= section < len(Column) else None
        if sort is None:  # not a column the store orders by: the indicator goes back
            self.show_sort(*self._model.sort_order)
            return
        self.sort_requested.emit(sort, order == Qt.SortOrder.DescendingOrder)

    # -- selection by task id -------------------------------------------------------------------

    def selected_rows(self) -> list[int]:
        selection = self.selectionModel()
        return sorted(index.row() for index in selection.selectedRows()) if selection else []

    def selected_tasks(self) -> list[Task]:
        tasks = (self._model.task_at(row) for row in self.selected_rows())
        return [task for task in tasks if task is not None]

    def selected_ids(self) -> list[str]:
        return [task.id for task in self.selected_tasks()]

    def select_ids(self, ids: Iterable[str]) -> None:
        """Select the rows of these tasks that are loaded; the first becomes current."""
        selection_model = self.selectionModel()
        if selection_model is None:
            return
        selection = QItemSelection()
        rows = sorted(r for r in (self._model.row_of(i) for i in ids) if r is not None)
        last = self._model.columnCount() - 1
        for row in rows:
            selection.select(self._model.index(row, 0), self._model.index(row, last))
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
                 | QItemSelectionModel.SelectionFlag.Rows)
        selection_model.select(selection, flags)
        if rows:
            selection_model.setCurrentIndex(
                self._model.index(rows[0], 0), QItemSelectionModel.SelectionFlag.NoUpdate
            )

    # -- keeping the user's place -----------------------------------------------------------------

    def top_task_id(self) -> str | None:
        """The task in the first visible row, when the user has scrolled away from the top."""
        if self.verticalScrollBar().value() == 0:
            return None  # at the top, new tasks should come into view
        task = self._model.task_at(self.rowAt(0))
        return task.id if task is not None else None

    def keep_at_top(self, task_id: str | None) -> None:
        """Scroll so that *task_id* is the first visible row again (after rows were added)."""
        if task_id is None:
            return
        row = self._model.row_of(task_id)
        if row is not None and row != self.rowAt(0):
            self.updateGeometries()  # the scroll range must already count the new rows
            self.scrollTo(self._model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtTop)

    def fetch_more_if_at_end(self) -> None:
        """Load the next page if the user is at the end of the loaded rows. Qt asks for more
        only as the scroll position changes, so a page that could not be read is asked for
        again here once the database can be read."""
        bar = self.verticalScrollBar()
        if bar.value() == bar.maximum() and self._model.canFetchMore(QModelIndex()):
            self._model.fetchMore(QModelIndex())

    # -- tooltips, made when asked ---------------------------------------------------------------

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            index = self.indexAt(event.pos())
            text = self._model.tooltip(index.row(), index.column()) if index.isValid() else None
            if text:
                QToolTip.showText(event.globalPos(), text, self.viewport(),
                                  self.visualRect(index))
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)

    # -- empty state ----------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self._model.rowCount() or not self.placeholder:
            return
        painter = QPainter(self.viewport())
        painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            self.viewport().rect().adjusted(20, 20, -20, -20),
            Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
            self.placeholder,
        )
        painter.end()
