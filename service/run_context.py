"""TaskContext: what an action's ``run(data, ctx)`` is given while one attempt of a task runs.

``task_id`` and ``attempt`` say which; ``progress(fraction, message=None)`` reports how far it
has come (coalesced, see service/progress.py); ``log(text)`` appends to the task's log;
``cancelled`` is an Event set when the task should stop — a user cancelled it, or Taskdesk is
shutting down (then ``stopping`` is True and the task goes back to the queue instead of ending
cancelled). An action may poll it or wait on it. Plugins need no import of Taskdesk to use it:
the names above are the whole interface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.progress import ProgressBoard
from storage import Task


class TaskContext:
    __slots__ = ("_append_log", "_board", "attempt", "cancelled", "cancelled_at", "stopping",
                 "task_id")

    def __init__(self, task: Task, board: ProgressBoard,
                 append_log: Callable[[str, bytes], None]) -> None:
        self.task_id = task.id
        self.attempt = task.attempts
        self.cancelled = threading.Event()
        self.stopping = False
        self.cancelled_at: float | None = None  # monotonic, for the kill grace
        self._board = board
        self._append_log = append_log

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self._board.report(self.task_id, self.attempt, fraction, message)

    def log(self, text: str | bytes) -> None:
        data = text if isinstance(text, bytes) else str(text).encode("utf-8", "replace")
        self._append_log(self.task_id, data)

    def cancel(self, *, stopping: bool = False) -> None:
        """Ask the action to stop: a user's cancel, or (*stopping*) Taskdesk shutting down."""
        if self.cancelled.is_set():
            return
        self.stopping = stopping
        self.cancelled_at = time.monotonic()
        self.cancelled.set()
