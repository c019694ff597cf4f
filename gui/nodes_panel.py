"""NodesPanel: the Taskdesk instances sharing a PostgreSQL database — "N nodes alive" in the
status bar (click it to show the list) and a Nodes dock listing each node (host, pid, API
address, started, last heartbeat) with the tasks it runs now.

Only for a shared database: on SQLite this window's instance is the only one, and the
window makes no panel. Threads: GUI thread only; the window's 1 s timer calls ``refresh``,
one query for the nodes and one for the actions of their running tasks.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QStatusBar,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from gui.formatting import format_timestamp, short_id
from service.task_service import TaskService
from storage import DatabaseError, NodeInfo, TaskQuery

COLUMNS = ("Node", "Host", "PID", "API", "Started", "Last heartbeat", "Running")


class NodesPanel:
    def __init__(self, service: TaskService, bar: QStatusBar, parent: QWidget) -> None:
        self._service = service
        self.button = QToolButton(bar)
        self.button.setAutoRaise(True)
        self.button.setToolTip("Taskdesk instances on this database; click for the list")
        self.button.setText("Nodes: …")
        bar.addPermanentWidget(self.button)
        self.tree = QTreeWidget(parent)
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.dock = QDockWidget("Nodes", parent)
        self.dock.setObjectName("nodes_dock")
        self.dock.setWidget(self.tree)
        self.dock.setVisible(False)
        self.button.clicked.connect(self.show)
        self.nodes: list[NodeInfo] = []

    def show(self) -> None:
        self.dock.setVisible(True)
        self.dock.raise_()
        self.refresh()

    def refresh(self) -> None:
        try:
            nodes = self._service.nodes()
        except DatabaseError as exc:
            self.button.setText("Nodes: database unavailable")
            self.button.setToolTip(str(exc))
            return
        self.nodes = nodes
        alive = sum(1 for n in nodes if n.alive)
        text = f"{alive} node{'' if alive == 1 else 's'} alive"
        if self.button.text() != text:
            self.button.setText(text)
            self.button.setToolTip("Taskdesk instances on this database; click for the list")
        if self.dock.isVisible():
            self._fill(nodes)

    def _fill(self, nodes: list[NodeInfo]) -> None:
        running = [task_id for n in nodes for task_id in n.running]
        actions: dict[str, str] = {}
        if running:
            try:
                tasks = self._service.page(TaskQuery(ids=running), len(running))
                actions = {t.id: t.action for t in tasks}
            except DatabaseError:
                pass
        self.tree.clear()
        for node in nodes:
            name = f"{node.id}{' (this window)' if node.current else ''}"
            if not node.alive:
                name += " — no heartbeat"
            item = QTreeWidgetItem([
                name, node.host, str(node.pid), node.api_url or "—",
                format_timestamp(node.started_at), format_timestamp(node.heartbeat_at),
                str(len(node.running)),
            ])
            for task_id in node.running:
                child = QTreeWidgetItem([short_id(task_id), actions.get(task_id, "")])
                child.setToolTip(0, task_id)
                item.addChild(child)
            self.tree.addTopLevelItem(item)
            item.setExpanded(True)
        for column in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(column)

    def area(self) -> Qt.DockWidgetArea:
        return Qt.DockWidgetArea.BottomDockWidgetArea
