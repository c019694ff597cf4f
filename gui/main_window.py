"""MainWindow: Taskdesk's window, composed of the panels in this package.

Layout: the queue toolbar (Pause/Resume, Schedules) on top; the status filter and search above
the task table, the throughput chart below it; on the right, the compose panel (with its When
and order options) above the details of the selection; the Schedules view docked at the
bottom when asked for; the status bar at the bottom.

Threads and refreshes:
- Only the GUI thread touches widgets and models. It waits only on the database: on reads,
  and, for the user's own Submit, Retry and Cancel, on the group commit that makes the change
  durable (storage/sqlite/writer.py) — one fsync, led by whichever thread got there first, a
  worker's included; up to the 5 s busy timeout while another program holds the database lock.
  It never waits for a task to run.
- Workers and the API thread report changes through ``service.subscribe``; the ChangeFeed's
  listener only appends task ids to a deque. A 100 ms QTimer drains it and, when something
  changed, the window refreshes once: the table (re-reading its live window of rows), the
  filter counts, the status bar and the details of the selection. A flood of changes thus costs
  at most ten bounded refreshes a second, fewer when a refresh is slow (see change_feed.py).
- A 1 s timer updates the status bar (workers busy, queue depth, throughput, the database's
  health, the pause, which the API or another instance may set), the chart, "due in" texts
  and the schedules, and retries what a fault left undone: a filter not yet applied, a page
  not yet loaded.
- Reads go through the service on the GUI thread: indexed pages, O(1) counts (a scan of the
  matching tasks while searching); SQLite in WAL mode lets them run while workers write.

Faults: every call into the service goes through one DatabaseStatus (database_status.py),
which turns what the service raises into a value, so nothing escapes into Qt's event loop. A
refresh that fails keeps the rows and counts shown and runs again at the next tick; an action
the user took says what failed and that nothing was changed; the status bar shows the problem
while it lasts.

Settings (window geometry, splitters, table columns, status filter, preferences) live in
QSettings; tests and the screenshot script pass their own QSettings object to stay away from
the user's.

The desktop: a tray icon where there is a tray (tray.py; closing the window then hides it into
the tray, if the preferences say so, and the API and workers go on), notifications
(notifications.py) and their preferences (preferences_dialog.py).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from PySide6.QtCore import QByteArray, QCoreApplication, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QGroupBox,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

import resources
from gui.change_feed import ChangeFeed
from gui.compose_panel import ComposePanel
from gui.database_status import DatabaseStatus
from gui.details_panel import DetailsPanel
from gui.filter_bar import FilterBar
from gui.nodes_panel import NodesPanel
from gui.notifications import Notifier, StatusBarSink
from gui.preferences import Preferences
from gui.preferences_dialog import PreferencesDialog
from gui.queue_toolbar import QueueToolbar
from gui.schedules_view import SchedulesDock
from gui.status_bar import StatusBarPanel
from gui.task_actions import TaskActions
from gui.task_export import TaskExporter, ask_path
from gui.task_table_model import TaskTableModel
from gui.task_table_view import TaskTableView
from gui.throughput_chart import ThroughputChart
from gui.tray import TrayController, TrayIconFactory, system_tray_icon
from service.schedules import Scheduler
from service.task_service import TaskService
from service.workers import WorkerPool
from storage import ORDERS, SORTS, STATUSES, TaskQuery, TaskSort, TaskStatus

STATS_INTERVAL_MS = 1000
DEFAULT_SIZE = (1280, 800)
ICON_PATH = Path(resources.__file__).with_name("taskdesk.svg")


@dataclass
class AppInfo:
    version: str
    db_path: Path | str  # a file, or a PostgreSQL URL without its password
    api_url: str | None
    api_error: str | None
    token: str | None
    # Plugins that could not be loaded, one line each ("plugin /path/x.py: SyntaxError …");
    # Taskdesk runs without them, and the status bar says so.
    load_problems: list[str] = field(default_factory=list)


def _group(title: str, content: QWidget, parent: QWidget) -> QGroupBox:
    box = QGroupBox(title, parent)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 8, 6, 6)
    layout.addWidget(content)
    return box


class MainWindow(QMainWindow):
    def __init__(
        self,
        service: TaskService,
        pool: WorkerPool | None,
        info: AppInfo,
        *,
        settings: QSettings | None = None,
        tray_icon: TrayIconFactory = system_tray_icon,
        schedules: Scheduler | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.service = service
        self.pool = pool
        self.info = info
        self.schedules = schedules
        self._settings = settings if settings is not None else QSettings()
        self._closed_down = False

        name = info.db_path.name if isinstance(info.db_path, Path) else info.db_path
        self.setWindowTitle(f"Taskdesk — {name}")
        if ICON_PATH.exists():
            self.setWindowIcon(QIcon(str(ICON_PATH)))

        # Parts.
        self.database = DatabaseStatus(service, self)
        self.model = TaskTableModel(service, self, database=self.database)
        self.table = TaskTableView(self.model, self)
        self.filter_bar = FilterBar(self)
        self.compose = ComposePanel(service, self.database, self)
        self.task_actions = TaskActions(service, self.database, info.api_url, info.token, self)
        self.details = DetailsPanel(self.task_actions.actions(), service, self.database, self)
        self.chart = ThroughputChart(self)
        self.status = StatusBarPanel(self.statusBar(), info.api_url, info.api_error,
                                     str(info.db_path), info.load_problems)
        self.feed = ChangeFeed(service, self)
        self.exporter = TaskExporter(service, self)
        self._build_desktop_parts(tray_icon)
        # Several instances on one database: how many are alive, and a list of them.
        self.nodes: NodesPanel | None = None
        if service.store.shared:
            self.nodes = NodesPanel(service, self.statusBar(), self)
            self.addDockWidget(self.nodes.area(), self.nodes.dock)
        self.queue_toolbar = QueueToolbar(service, self)
        self.schedules_dock = SchedulesDock(schedules, self)
        self.stats_timer = QTimer(self)
        self.stats_timer.setInterval(STATS_INTERVAL_MS)
        self._filter_pending = False  # the filter bar's choice is not yet shown (a fault)

        self._build_layout()
        self._build_menus()
        self._connect()
        self._set_tab_order()
        self._restore_settings()
        self._apply_filter()
        self._refresh_stats()
        self.stats_timer.start()
        self.table.setFocus()

    # -- construction ---------------------------------------------------------------------------

    def _build_layout(self) -> None:
        self.left_splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.left_splitter.addWidget(self.table)
        self.left_splitter.addWidget(self.chart)
        self.left_splitter.setStretchFactor(0, 1)
        self.left_splitter.setChildrenCollapsible(False)

        self.right_splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.right_splitter.addWidget(_group("New task", self.compose, self))
        self.right_splitter.addWidget(_group("Details", self.details, self))
        self.right_splitter.setStretchFactor(1, 1)
        self.right_splitter.setChildrenCollapsible(False)

        self.main_splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.main_splitter.addWidget(self.left_splitter)
        self.main_splitter.addWidget(self.right_splitter)
        self.main_splitter.setStretchFactor(0, 1)
        self.main_splitter.setChildrenCollapsible(False)

        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.queue_toolbar)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.schedules_dock)
        self.schedules_dock.hide()  # until asked for (the toolbar, Ctrl+Shift+S)
        self.schedules_action = self.schedules_dock.toggleViewAction()
        self.schedules_action.setText("Schedules")
        self.schedules_action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.schedules_action.setToolTip("Show the schedules of the actions file (Ctrl+Shift+S)")
        self.queue_toolbar.addAction(self.schedules_action)

        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 8, 8, 4)
        layout.setSpacing(8)
        layout.addWidget(self.filter_bar)
        layout.addWidget(self.main_splitter, 1)
        self.setCentralWidget(central)

        self.main_splitter.setSizes([880, 400])
        self.left_splitter.setSizes([560, 140])
        self.right_splitter.setSizes([260, 440])

    def _build_desktop_parts(self, tray_icon: TrayIconFactory) -> None:
        """The tray icon, notifications and their preferences (tray.py, notifications.py)."""
        self.preferences = Preferences.load(self._settings)
        self.tray = TrayController(self, self.service, self.database, self.preferences,
                                   icon_factory=tray_icon, open_preferences=self.open_preferences,
                                   quit_app=self.request_quit)
        sink = self.tray.sink() or StatusBarSink(self.status.show_message)
        self.notifier = Notifier(self.service, self.preferences, sink, self)

    def _build_menus(self) -> None:
        menu_bar = self.menuBar()

        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.quit_action.triggered.connect(self.request_quit)
        self.preferences_action = QAction("&Preferences…", self)
        self.preferences_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.preferences_action.triggered.connect(self.open_preferences)
        self.export_action = QAction("&Export Shown Tasks…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_action.setToolTip("Save every task of the current filter, in the table's "
                                      "order, as CSV or JSON (Ctrl+E)")
        self.export_action.triggered.connect(self.export_shown)
        self.export_selected_action = QAction("Export &Selected Tasks…", self)
        self.export_selected_action.triggered.connect(self.export_selected)
        file_menu = menu_bar.addMenu("&File")
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.export_selected_action)
        file_menu.addSeparator()
        file_menu.addAction(self.preferences_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        self.find_action = QAction("&Find…", self)
        self.find_action.setShortcut(QKeySequence("Ctrl+F"))
        self.find_action.triggered.connect(self.focus_search)
        self.submit_action = QAction("&Submit", self)
        self.submit_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.submit_action.triggered.connect(self.compose.submit)
        task_menu = menu_bar.addMenu("&Task")
        task_menu.addAction(self.submit_action)
        task_menu.addAction(self.find_action)
        task_menu.addSeparator()
        actions = self.task_actions
        for action in (actions.retry_action, actions.cancel_action, actions.delete_action):
            task_menu.addAction(action)
        task_menu.addSeparator()
        for action in (actions.copy_id_action, actions.copy_curl_action):
            task_menu.addAction(action)
        if self.nodes is not None:
            view_menu = menu_bar.addMenu("&View")
            view_menu.addAction(self.nodes.dock.toggleViewAction())
        queue_menu = menu_bar.addMenu("&Queue")
        queue_menu.addAction(self.queue_toolbar.pause_action)
        queue_menu.addAction(self.schedules_action)

        # The table's right-click menu: the same actions, so shortcuts and states agree.
        separator = QAction(self)
        separator.setSeparator(True)
        after_copy = QAction(self)
        after_copy.setSeparator(True)
        self.table.addActions([actions.retry_action, actions.cancel_action,
                               actions.delete_action, separator,
                               actions.copy_id_action, actions.copy_curl_action, after_copy,
                               self.export_selected_action])

        self.about_action = QAction("&About Taskdesk", self)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.about_action.triggered.connect(self.show_about)
        help_menu = menu_bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _connect(self) -> None:
        self.feed.changed.connect(self._on_changes)
        self.feed.resync.connect(self._on_resync)
        self.stats_timer.timeout.connect(self._refresh_stats)
        if self.nodes is not None:
            self.stats_timer.timeout.connect(self.nodes.refresh)
        self.filter_bar.status_changed.connect(self._apply_filter)
        self.filter_bar.search_changed.connect(self._apply_filter)
        self.filter_bar.scheduled_changed.connect(self._apply_filter)
        self.compose.submitted.connect(self.refresh_now)
        self.compose.when.add_selected_requested.connect(
            lambda: self.compose.when.add_tasks(self.table.selected_tasks()))
        self.queue_toolbar.paused_changed.connect(self.status.set_paused)
        self.queue_toolbar.message.connect(self.status.show_message)
        self.schedules_dock.message.connect(self.status.show_message)
        self.schedules_dock.changed.connect(self.refresh_now)
        self.task_actions.changed.connect(self.refresh_now)
        self.task_actions.message.connect(self.status.show_message)
        self.task_actions.failed.connect(self.tell_user)
        self.database.problem_changed.connect(self.status.show_problem)
        self.database.problem_changed.connect(self.notifier.database_problem)
        self.compose.submitted.connect(self.notifier.watch)
        self.notifier.tasks_failed.connect(self.tray.note_failures)
        selection = self.table.selectionModel()
        selection.selectionChanged.connect(self._on_selection)
        self.model.modelReset.connect(self._on_selection)
        self.table.sort_requested.connect(self.sort_by)
        self.exporter.finished.connect(self._exported)
        self.exporter.failed.connect(self._export_failed)

    def _set_tab_order(self) -> None:
        chain: list[QWidget] = [
            *self.filter_bar.buttons(),
            self.filter_bar.search_edit,
            self.table,
            *self.compose.focus_chain(),
            *self.details.buttons,
            self.details.view,
            self.details.log_view,
        ]
        for before, after in pairwise(chain):
            QWidget.setTabOrder(before, after)

    # -- refreshing -----------------------------------------------------------------------------

    def refresh_now(self) -> None:
        """Show the effect of the user's own change at once instead of at the next tick."""
        self.feed.flush()

    def _on_changes(self, changed: Mapping[str, int]) -> None:
        if not self.database.run("refresh the task list", lambda: self._show_changes(changed)):
            # Shown at the next tick instead; until then the rows and counts stay as they were.
            self.feed.defer(changed)

    def _show_changes(self, changed: Mapping[str, int]) -> None:
        # Someone reading rows further down keeps them in place while new tasks arrive above.
        anchor = self.table.top_task_id()
        self.model.refresh(changed)
        self.table.keep_at_top(anchor)
        self._refresh_counts()
        self._refresh_status_bar()
        self._on_selection()

    def _on_resync(self) -> None:
        # Another instance changed more than it could name: re-read every loaded row.
        self._on_changes({task.id: task.seq for task in self.model.tasks()})

    def _refresh_counts(self) -> None:
        self.filter_bar.set_counts(self.service.count_by_status(self.model.search))
        self._update_placeholder()

    def _refresh_status_bar(self) -> None:
        pool = self.pool
        completed_per_second, _ = self.service.rates.rates(10)
        self.status.update_stats(
            self.service.counts(),
            pool.busy if pool is not None else None,
            pool.workers if pool is not None else None,
            completed_per_second,
        )

    def _refresh_stats(self) -> None:
        self.chart.set_series(self.service.rates.series(self.chart.seconds))  # in memory
        # Also how the status bar learns that a fault met by another thread came or went. One
        # guarded call: a success right after a failure would clear the failure shown.
        self.database.run("update the status bar", self._refresh_bar_and_time_bound)
        if self._filter_pending:
            self._apply_filter()
        elif self.model.fetch_failed:
            self.table.fetch_more_if_at_end()

    def _refresh_bar_and_time_bound(self) -> None:
        self._refresh_status_bar()
        self._refresh_time_bound()

    def _refresh_time_bound(self) -> None:
        """What changes with the clock or is stored by others: the pause (the API or another
        instance may have paused), "due in" texts, scheduled tasks that became due, and the
        schedules' next due times."""
        paused = self.service.paused()
        self.queue_toolbar.sync(paused)
        self.status.set_paused(paused)
        if self.model.refresh_due():
            self.model.refresh()
            self._refresh_counts()
        if self.schedules_dock.isVisible():
            self.schedules_dock.refresh()

    def _on_selection(self) -> None:
        tasks = self.table.selected_tasks()
        self.task_actions.set_selection(tasks)
        self.details.show_tasks(tasks)

    def tell_user(self, title: str, text: str) -> None:
        """Say what went wrong with what the user just did, without blocking the window's
        refreshes behind a nested event loop (open(), not exec())."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok,
                          self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- export ---------------------------------------------------------------------------------

    def export_shown(self) -> None:
        """Save every task of the current filter, in the current order (not only the rows
        loaded)."""
        sort, descending = self.model.sort_order
        status = self.model.status_filter
        query = TaskQuery(status=status, search=self.model.search or None,
                          scheduled_after=self.service.now() if self.model.scheduled else None,
                          sort=sort, descending=descending)
        self._export(query, "Export Shown Tasks", f"{status or 'tasks'}")

    def export_selected(self) -> None:
        ids = self.table.selected_ids()
        if not ids:
            self.status.show_message("Select the tasks to export first")
            return
        sort, descending = self.model.sort_order
        self._export(TaskQuery(ids=ids, sort=sort, descending=descending),
                     "Export Selected Tasks", "selected-tasks")

    def _export(self, query: TaskQuery, title: str, name: str) -> None:
        if self.exporter.running:
            self.status.show_message("An export is still being written")
            return
        chosen = ask_path(self, title, name + ".csv")
        if chosen is None:
            return
        path, fmt = chosen
        self.status.show_message(f"Exporting to {path.name}…")
        self.exporter.start(query, path, fmt)

    def _exported(self, path: str, count: int) -> None:
        self.status.show_message(f"Exported {count:,} task{'s' if count != 1 else ''} to "
                                 f"{Path(path).name}")

    def _export_failed(self, path: str, reason: str) -> None:
        self.tell_user("Export failed", f"Could not export the tasks to {path}: {reason}")

    # -- filtering and sorting --------------------------------------------------------------------

    def sort_by(self, sort: TaskSort, descending: bool) -> None:
        """Order the table by *sort*; when the first page cannot be read, the rows and the
        header's indicator stay as they were."""
        keep = self.table.selected_ids()

        def load() -> None:
            self.model.set_sort(sort, descending)
            self.table.select_ids(keep)

        self.database.run("sort the task list", load)
        self.table.show_sort(*self.model.sort_order)

    def _apply_filter(self) -> None:
        # Until it succeeds the table keeps the rows it has, and the stats tick tries again.
        self._filter_pending = not self.database.run("show the chosen tasks", self._load_filter)

    def _load_filter(self) -> None:
        keep = self.table.selected_ids()
        self.model.set_filter(self.filter_bar.status, self.filter_bar.search,
                              self.filter_bar.scheduled)
        self.table.select_ids(keep)
        self._refresh_counts()

    def _update_placeholder(self) -> None:
        status, search = self.model.status_filter, self.model.search
        if self.model.scheduled:
            what = f"{status} scheduled tasks" if status else "scheduled tasks"
            self.table.placeholder = (f"No {what}" + (f" match “{search}”" if search else "")
                                      + ".\nTasks submitted with a delay or a time to run at "
                                      "are shown here until they are due.")
            return
        if status is None and not search:
            text = ("No tasks yet.\nSubmit one with the form on the right (Ctrl+Enter)"
                    + (f"\nor POST it to {self.info.api_url}/tasks" if self.info.api_url else ""))
        else:
            what = f"{status} tasks" if status else "tasks"
            text = f"No {what}" + (f" match “{search}”" if search else "") + "."
        self.table.placeholder = text

    def focus_search(self) -> None:
        edit = self.filter_bar.search_edit
        edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        edit.selectAll()

    # -- help -----------------------------------------------------------------------------------

    def about_text(self) -> str:
        info = self.info
        if info.api_url:
            api = html.escape(info.api_url)
        else:
            api = "not available" + (f": {html.escape(info.api_error)}" if info.api_error else "")
        problems = ""
        if info.load_problems:
            listed = "".join(f"<li>{html.escape(p)}</li>" for p in info.load_problems)
            problems = (f"<p><b>Plugins that failed to load</b> (their actions are not "
                        f"available):</p><ul>{listed}</ul>")
        return (
            f"<h3>Taskdesk {html.escape(info.version)}</h3>"
            "<p>A desktop task queue: this window, an HTTP API and workers sharing one "
            "database (a SQLite file, or PostgreSQL shared with other instances).</p>"
            f"<p><b>Database:</b> {html.escape(str(info.db_path))}<br>"
            f"<b>API:</b> {api}</p>"
            f"{problems}"
        )

    def show_about(self) -> None:
        QMessageBox.about(self, "About Taskdesk", self.about_text())

    # -- settings and shutdown ------------------------------------------------------------------

    def _restore_settings(self) -> None:
        s = self._settings
        geometry = s.value("window/geometry")
        if not (isinstance(geometry, QByteArray) and self.restoreGeometry(geometry)):
            screen = QGuiApplication.primaryScreen()
            width, height = DEFAULT_SIZE
            if screen is not None:
                available = screen.availableGeometry()
                width = min(width, int(available.width() * 0.9))
                height = min(height, int(available.height() * 0.9))
            self.resize(width, height)
        for key, splitter in self._splitters().items():
            state = s.value(f"splitters/{key}")
            if isinstance(state, QByteArray):
                splitter.restoreState(state)
        header_state = s.value("table/header")
        if isinstance(header_state, QByteArray):
            self.table.horizontalHeader().restoreState(header_state)
        sort, _, order = str(s.value("table/sort", "")).partition(" ")
        if sort in SORTS and order in ORDERS:
            self.model.set_sort(TaskSort(sort), order == "desc", reload=False)
        self.table.show_sort(*self.model.sort_order)  # also over the header state's own
        status = s.value("filter/status", "")
        self.filter_bar.set_status(TaskStatus(str(status)) if status in STATUSES else None)
        self.filter_bar.set_scheduled(str(s.value("filter/scheduled", "false")) == "true")

    def _splitters(self) -> dict[str, QSplitter]:
        return {"main": self.main_splitter, "left": self.left_splitter,
                "right": self.right_splitter}

    def save_settings(self) -> None:
        s = self._settings
        s.setValue("window/geometry", self.saveGeometry())
        for key, splitter in self._splitters().items():
            s.setValue(f"splitters/{key}", splitter.saveState())
        s.setValue("table/header", self.table.horizontalHeader().saveState())
        sort, descending = self.model.sort_order
        s.setValue("table/sort", f"{sort.value} {'desc' if descending else 'asc'}")
        s.setValue("filter/status", str(self.filter_bar.status or ""))
        s.setValue("filter/scheduled", "true" if self.filter_bar.scheduled else "false")
        s.sync()

    def open_preferences(self) -> None:
        dialog = PreferencesDialog(self.preferences, self.tray.icon is not None, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def accepted() -> None:
            self.preferences.update(dialog.preferences())
            self.preferences.save(self._settings)
            self.tray.apply_preferences()

        dialog.accepted.connect(accepted)
        dialog.open()

    def request_quit(self) -> None:
        """Quit Taskdesk (File ▸ Quit, the tray's Quit), even while it closes to the tray:
        the window closes and the event loop ends, and main.py shuts down as usual."""
        self.close()
        QCoreApplication.quit()  # does nothing where no event loop runs (tests)

    def closeEvent(self, event: QCloseEvent) -> None:
        # Saved here, while the window still has its on-screen geometry; main.py quits the
        # event loop when the last window closes and then calls shutdown().
        self.save_settings()
        # Only the window's own close button (a spontaneous close) hides it into the tray:
        # a quit (Ctrl+Q, the tray's Quit, SIGTERM, logging out) closes windows too, and an
        # ignored close would refuse it.
        if event.spontaneous() and self.tray.keeps_running_when_closed:
            event.ignore()
            self.hide()
            self.tray.hidden_to_tray(self._settings)
            return
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop timers and listening to the service, save settings; safe to call twice."""
        if self._closed_down:
            return
        self._closed_down = True
        self.feed.stop()
        self.notifier.stop()
        self.tray.shutdown()
        self.stats_timer.stop()
        self.details.stop()
        # An export being written reads the store, which closes after this: let it finish
        # (a big one is given up, its .part file left for the user to delete).
        self.exporter.wait(10)
        self.save_settings()

