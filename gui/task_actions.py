"""TaskActions: Retry, Cancel, Delete, Copy ID and Copy as curl for the selected tasks.

One QAction each, shared by the Task menu, the table's context menu and the details panel's
buttons, so shortcuts, labels and enabled states agree everywhere. An action is enabled only
when it applies to at least one selected task (Retry: failed or cancelled; Cancel: queued, or
running and not yet asked to stop; Delete: finished). Cancel reads "Stop" when it would only
stop running tasks. Retry and Cancel ask for no confirmation: a cancelled task can be retried,
and a running one asked to stop ends cancelled, so nothing is lost that Retry cannot bring
back; Delete asks first, since it cannot be undone.

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
from PySide6.QtWidgets import QMessageBox, QWidget

from gui.database_status import DatabaseStatus, Failed
from gui.formatting import short_id
from service.task_service import TaskService
from storage import CANCELLABLE, RETRYABLE, Task, TaskStatus, describe_statuses

CANCEL_TEXT, STOP_TEXT = "&Cancel", "S&top"
CANCEL_TIP = "Cancel the selected queued tasks, stop the running ones (Delete or Ctrl+.)"


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


def _what(tasks: Sequence[Task]) -> str:
    return f"task {short_id(tasks[0].id)}" if len(tasks) == 1 else _plural(len(tasks), "task")


def _cancellable(tasks: Sequence[Task]) -> list[Task]:
    """Those of *tasks* Cancel would change: a running task already asked to stop is not."""
    return [t for t in tasks if t.status.can_cancel and not t.cancel_requested]


def _stops_only(tasks: Sequence[Task]) -> bool:
    return bool(tasks) and all(t.status == TaskStatus.RUNNING for t in tasks)


def _mine(asked: Sequence[Task], applied: Sequence[Task]) -> list[Task]:
    """The tasks of *applied* that were *asked* for (a cancel takes dependents along)."""
    ids = {t.id for t in asked}
    return [t for t in applied if t.id in ids]


def _done(verb: str, done: Sequence[Task], asked: Sequence[Task]) -> str:
    """"Cancelled task 1a2b3c4d" when the one task asked for was, else "Cancelled 3 tasks"."""
    if len(done) == 1 and len(asked) == 1:
        return f"{verb} {_what(done)}"
    return f"{verb} {_plural(len(done), 'task')}"


def _asked_to_stop(stopping: Sequence[Task], asked: Sequence[Task]) -> str:
    if len(stopping) == 1 and len(asked) == 1:
        return f"Asked {_what(stopping)} to stop"
    return f"Asked {_plural(len(stopping), 'task')} to stop"


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
            CANCEL_TEXT, [QKeySequence(Qt.Key.Key_Delete), QKeySequence("Ctrl+.")], self.cancel,
            CANCEL_TIP,
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
        cancellable = _cancellable(tasks)
        self.cancel_action.setEnabled(bool(cancellable))
        self.cancel_action.setText(STOP_TEXT if _stops_only(cancellable) else CANCEL_TEXT)
        self.delete_action.setEnabled(any(t.status.is_finished for t in tasks))
        self.copy_id_action.setEnabled(bool(tasks))
        self.copy_curl_action.setEnabled(bool(tasks) and self._api_url is not None)

    # -- commands -------------------------------------------------------------------------------

    def retry(self) -> None:
        tasks = [t for t in self._tasks if t.status.can_retry]
        applied = self._apply(tasks, self._service.retry_many, "Retry")
        if applied is None:
            return
        done = _mine(tasks, applied)
        self._report([_done("Retried", done, tasks)],
                     len(tasks) - len(done), f"no longer {describe_statuses(RETRYABLE)}")

    def cancel(self) -> None:
        """Cancel the selected queued tasks and ask the running ones to stop (they end
        cancelled when their attempt ends)."""
        tasks = _cancellable(self._tasks)
        verb = "Stop" if _stops_only(tasks) else "Cancel"
        applied = self._apply(tasks, self._service.cancel_many, verb)
        if applied is None:
            return
        mine = _mine(tasks, applied)
        cancelled = [t for t in mine if t.status == TaskStatus.CANCELLED]
        stopping = [t for t in mine if t.status == TaskStatus.RUNNING]
        parts = [_done("Cancelled", cancelled, tasks) if cancelled or not stopping else "",
                 _asked_to_stop(stopping, tasks) if stopping else ""]
        waiting = len(applied) - len(mine)  # tasks waiting for a cancelled one go with it
        if waiting:
            parts.append(f"also cancelled {_plural(waiting, 'task')} waiting for "
                         f"{'it' if len(cancelled) == 1 else 'them'}")
        self._report([p for p in parts if p], len(tasks) - len(mine),
                     f"no longer {describe_statuses(CANCELLABLE)}")

    def delete(self) -> None:
        """Delete the selected finished tasks, with their logs, once the user confirms (it
        cannot be undone)."""
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
        applied = self._apply(finished, self._service.delete_many, "Delete")
        if applied is None:
            return
        done = _mine(finished, applied)
        self._report([_done("Deleted", done, finished)], len(finished) - len(done),
                     "no longer finished")

    def _apply(
        self, tasks: list[Task], apply: Callable[[Sequence[str]], list[Task]], verb: str
    ) -> list[Task] | None:
        """*apply* to the tasks' ids in one write; None (and the user told) if it failed."""
        if not tasks:
            return None
        ids = [t.id for t in tasks]
        # One write for the whole selection: the GUI thread waits for one commit, not N.
        applied = self._database.call(f"{verb.lower()} {_what(tasks)}", lambda: apply(ids))
        if isinstance(applied, Failed):
            self.failed.emit(f"{verb} failed", applied.explain())
            return None
        return applied

    def _report(self, parts: list[str], skipped: int, why_skipped: str) -> None:
        text = "; ".join(parts)
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
