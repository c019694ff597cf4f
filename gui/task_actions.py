"""TaskActions: Retry, Cancel, Delete, Copy ID and Copy as curl for the selected tasks.

One QAction each, shared by the Task menu, the table's context menu and the details panel's
buttons, so shortcuts, labels and enabled states agree everywhere. An action is enabled only
when it applies to at least one selected task (Retry: failed or cancelled; Cancel: queued or
running; Delete: finished, after a confirmation, since it cannot be undone).

Threads: GUI thread only. ``service.retry``/``service.cancel`` are single conditional UPDATEs;
a task a worker claimed in the meantime is reported, not an error.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QMessageBox, QWidget

from gui.formatting import short_id
from service.task_service import TaskService
from storage import Task


def curl_command(api_url: str, token: str | None, action: str, data: Any) -> str:
    """The shell command that submits the same task to the API at *api_url*."""
    body = json.dumps({"action": action, "data": data}, ensure_ascii=False)
    words = ["curl", "-X", "POST", api_url.rstrip("/") + "/tasks",
             "-H", "Content-Type: application/json"]
    if token:
        words += ["-H", f"Authorization: Bearer {token}"]
    words += ["-d", body]
    return " ".join(shlex.quote(word) for word in words)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


class TaskActions(QObject):
    changed = Signal()  # tasks were retried or cancelled: refresh now
    message = Signal(str)  # a short report for the status bar

    def __init__(
        self,
        service: TaskService,
        api_url: str | None,
        token: str | None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._api_url = api_url
        self._token = token
        self._tasks: list[Task] = []

        self.retry_action = self._make(
            "&Retry", [QKeySequence("Ctrl+R")], self.retry,
            "Queue the selected failed or cancelled tasks again (Ctrl+R)",
        )
        self.cancel_action = self._make(
            "&Cancel", [QKeySequence(Qt.Key.Key_Delete), QKeySequence("Ctrl+.")], self.cancel,
            "Cancel the selected queued tasks (Delete or Ctrl+.)",
        )
        self.delete_action = self._make(
            "De&lete…", [QKeySequence("Shift+Delete")], self.delete,
            "Delete the selected finished tasks, with their logs (Shift+Delete)",
        )
        self.copy_id_action = self._make(
            "Copy &ID", [QKeySequence(QKeySequence.StandardKey.Copy)], self.copy_ids,
            "Copy the selected tasks' ids (Ctrl+C)",
        )
        curl_tip = (
            "Copy a curl command that submits the same task to the API (Ctrl+Shift+C)"
            if api_url else "The API is not running, so there is no address to send to"
        )
        self.copy_curl_action = self._make(
            "Copy as c&url", [QKeySequence("Ctrl+Shift+C")], self.copy_curl, curl_tip
        )
        self.set_selection([])

    def _make(
        self, text: str, keys: list[QKeySequence], slot: Callable[[], None], tip: str
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcuts(keys)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def actions(self) -> list[QAction]:
        return [self.retry_action, self.cancel_action, self.delete_action, self.copy_id_action,
                self.copy_curl_action]

    # -- selection ------------------------------------------------------------------------------

    def set_selection(self, tasks: Sequence[Task]) -> None:
        self._tasks = list(tasks)
        self.retry_action.setEnabled(any(t.status.can_retry for t in tasks))
        self.cancel_action.setEnabled(any(t.status.can_cancel for t in tasks))
        self.delete_action.setEnabled(any(t.status.is_finished for t in tasks))
        self.copy_id_action.setEnabled(bool(tasks))
        self.copy_curl_action.setEnabled(bool(tasks) and self._api_url is not None)

    # -- commands -------------------------------------------------------------------------------

    def retry(self) -> None:
        self._change([t for t in self._tasks if t.status.can_retry],
                     self._service.retry_many, "Retried", "no longer failed or cancelled")

    def cancel(self) -> None:
        self._change([t for t in self._tasks if t.status.can_cancel],
                     self._service.cancel_many, "Cancelled", "no longer queued")

    def delete(self) -> None:
        finished = [t for t in self._tasks if t.status.is_finished]
        if not finished:
            return
        what = (f"task {short_id(finished[0].id)}" if len(finished) == 1
                else _plural(len(finished), "finished task"))
        parent = self.parent()
        answer = QMessageBox.question(
            parent if isinstance(parent, QWidget) else None, "Delete tasks",
            f"Delete {what}, with {'its' if len(finished) == 1 else 'their'} results and "
            "logs? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._change(finished, self._service.delete_many, "Deleted", "no longer finished")

    def _change(
        self,
        tasks: list[Task],
        apply: Callable[[Sequence[str]], list[Task]],
        verb: str,
        why_skipped: str,
    ) -> None:
        if not tasks:
            return
        # One write for the whole selection: the GUI thread waits for one commit, not N.
        done = len(apply([t.id for t in tasks]))
        text = f"{verb} {_plural(done, 'task')}"
        if len(tasks) == 1 and done == 1:
            text = f"{verb} task {short_id(tasks[0].id)}"
        skipped = len(tasks) - done
        if skipped:
            # They moved on since they were shown (a worker claimed one, say).
            text += f"; {skipped:,} skipped: {why_skipped}"
        self.message.emit(text)
        self.changed.emit()

    def copy_ids(self) -> None:
        if not self._tasks:
            return
        self._copy("\n".join(t.id for t in self._tasks),
                   f"Copied {_plural(len(self._tasks), 'id')}")

    def copy_curl(self) -> None:
        if not self._tasks or self._api_url is None:
            return
        commands = [curl_command(self._api_url, self._token, t.action, t.data)
                    for t in self._tasks]
        self._copy("\n".join(commands),
                   f"Copied {_plural(len(commands), 'curl command')}")

    def _copy(self, text: str, report: str) -> None:
        clipboard = QGuiApplication.clipboard()
        clipboard.setText(text)
        self.message.emit(report)
