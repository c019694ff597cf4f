"""TaskActions: Retry, Cancel, Copy ID and Copy as curl for the selected tasks.

One QAction each, shared by the Task menu, the table's context menu and the details panel's
buttons, so shortcuts, labels and enabled states agree everywhere. An action is enabled only
when it applies to at least one selected task (Retry: failed or cancelled; Cancel: queued).

Threads: GUI thread only. Retry and Cancel are one conditional UPDATE for the whole selection
(``service.retry_many``/``cancel_many``), and the GUI thread waits for the commit that makes it
durable (see gui/main_window.py); a task a worker claimed in the meantime is reported as
skipped, not an error. When the database cannot be written (disk full, locked, damaged) the
write changes nothing: ``failed`` carries what went wrong for the window to tell the user, and
the status bar shows the problem (gui/database_status.py). Copy ID and Copy as curl use the
tasks already shown and never read the database.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence

from gui.database_status import DatabaseStatus, Failed
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
    failed = Signal(str, str)  # title, text: a change the user asked for could not be made

    def __init__(
        self,
        service: TaskService,
        database: DatabaseStatus,
        api_url: str | None,
        token: str | None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._database = database
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
        return [self.retry_action, self.cancel_action, self.copy_id_action,
                self.copy_curl_action]

    # -- selection ------------------------------------------------------------------------------

    def set_selection(self, tasks: Sequence[Task]) -> None:
        self._tasks = list(tasks)
        self.retry_action.setEnabled(any(t.status.can_retry for t in tasks))
        self.cancel_action.setEnabled(any(t.status.can_cancel for t in tasks))
        self.copy_id_action.setEnabled(bool(tasks))
        self.copy_curl_action.setEnabled(bool(tasks) and self._api_url is not None)

    # -- commands -------------------------------------------------------------------------------

    def retry(self) -> None:
        self._change([t for t in self._tasks if t.status.can_retry],
                     self._service.retry_many, "Retry", "Retried",
                     "no longer failed or cancelled")

    def cancel(self) -> None:
        self._change([t for t in self._tasks if t.status.can_cancel],
                     self._service.cancel_many, "Cancel", "Cancelled", "no longer queued")

    def _change(
        self,
        tasks: list[Task],
        apply: Callable[[Sequence[str]], list[Task]],
        verb: str,
        done_verb: str,
        why_skipped: str,
    ) -> None:
        if not tasks:
            return
        what = (f"task {short_id(tasks[0].id)}" if len(tasks) == 1
                else _plural(len(tasks), "task"))
        ids = [t.id for t in tasks]
        # One write for the whole selection: the GUI thread waits for one commit, not N.
        applied = self._database.call(f"{verb.lower()} {what}", lambda: apply(ids))
        if isinstance(applied, Failed):
            self.failed.emit(f"{verb} failed", applied.explain())
            return
        done = len(applied)
        text = f"{done_verb} {_plural(done, 'task')}"
        if len(tasks) == 1 and done == 1:
            text = f"{done_verb} {what}"
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
