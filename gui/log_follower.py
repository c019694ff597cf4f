"""LogFollower: shows one task's log in a LogView and follows it while the task runs.

``follow(task)`` is called with the selected task whenever the window refreshes. A new task
is read at once, from the start of its log; a running one is read again every POLL_MS, and a
last time when it ends (its final output); nothing is read while no running task is shown, so
a window left on a finished task costs nothing.

Reads go through ``service.read_log`` (offsets count every byte the task ever logged, so a
reader never sees a byte twice) and the window's DatabaseStatus; a read that fails is tried
again at the next tick, with the problem shown by ``problem`` until one succeeds.

Bytes become text with an incremental UTF-8 decoder: invalid bytes show as U+FFFD, and a
character whose bytes are split between two reads waits for its end instead of becoming two
replacement characters. Line ends: Qt ends a line at "\\n", "\\r\\n" or a lone "\\r", so a
"\\r" at the end of a read waits to see whether "\\n" follows (else "\\r\\n" split between
two reads would end two lines). Only the last ``view.max_chars`` bytes of a read are decoded:
the view would drop the rest anyway, and a log can be 10 MiB.

Threads: GUI thread only.
"""

from __future__ import annotations

import codecs

from PySide6.QtCore import QObject, QTimer, Signal

from gui.database_status import DatabaseStatus, Failed
from gui.log_view import LogView
from service.task_service import TaskService
from storage import MAX_LOG_BYTES, LogSlice, Task, TaskStatus

POLL_MS = 500
CHUNK_BYTES = 1024 * 1024
# One poll reads at most this much, so a task logging faster than we read cannot keep the GUI
# thread in the loop; the store keeps little more than MAX_LOG_BYTES of a log anyway.
MAX_BYTES_PER_POLL = 2 * MAX_LOG_BYTES
_MAX_CONTINUATION = 3  # bytes 0x80–0xBF after a UTF-8 lead byte


class LogFollower(QObject):
    problem_changed = Signal(object)  # str | None: why the log could not be read
    read = Signal()  # a read succeeded (and what it found is shown)

    def __init__(
        self,
        service: TaskService,
        database: DatabaseStatus,
        view: LogView,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._database = database
        self._view = view
        self._task_id: str | None = None
        self._running = False
        self._finished = False  # no more output will come (unless the task is retried)
        self._offset = 0  # where the next read starts
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held_cr = False  # the last read ended with "\r"
        self._problem: str | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    @property
    def task_id(self) -> str | None:
        return self._task_id

    @property
    def offset(self) -> int:
        """The log offset read up to."""
        return self._offset

    @property
    def problem(self) -> str | None:
        return self._problem

    def follow(self, task: Task | None) -> None:
        """Show *task*'s log (None: none), following it while it runs."""
        new = task is None or task.id != self._task_id
        if new:
            self._view.clear_log()
            self._offset = 0
            self._decoder.reset()
            self._held_cr = False
            self._task_id = task.id if task is not None else None
            self._set_problem(None)
        if task is None:
            self._running = False
            self.timer.stop()
            return
        was_running = self._running
        self._running = task.status == TaskStatus.RUNNING
        self._finished = task.status.is_finished
        if new or (was_running and not self._running):
            self.poll()  # the log so far, or the last output before the task ended
        self._schedule()

    def stop(self) -> None:
        self.follow(None)

    def poll(self) -> None:
        task_id = self._task_id
        if task_id is None:
            return
        offset = self._offset
        slices = self._database.call("read the task's log", lambda: self._read(task_id, offset))
        if isinstance(slices, Failed):
            self._set_problem(f"Could not read the log: {slices.cause}")
        else:
            self._set_problem(None)
            self._show(slices)
            self.read.emit()
        self._schedule()

    def _schedule(self) -> None:
        # Polls only while there is something to wait for: output, or a read to try again.
        wanted = self._task_id is not None and (self._running or self._problem is not None)
        if wanted and not self.timer.isActive():
            self.timer.start()
        elif not wanted:
            self.timer.stop()

    def _read(self, task_id: str, offset: int) -> list[LogSlice]:
        slices: list[LogSlice] = []
        total = 0
        while total < MAX_BYTES_PER_POLL:
            piece = self._service.read_log(task_id, offset, CHUNK_BYTES)
            slices.append(piece)
            total += len(piece.data)
            offset = piece.next_offset
            if len(piece.data) < CHUNK_BYTES:
                break
        return slices

    def _show(self, slices: list[LogSlice]) -> None:
        data = bytearray()
        for piece in slices:
            if piece.start > self._offset:
                # The store dropped the head of the log before we read it (it keeps the
                # last MAX_LOG_BYTES): what the decoder held belongs to bytes now gone.
                data.clear()
                self._restart()
            data += piece.data
            self._offset = piece.next_offset
        keep = self._view.max_chars
        if len(data) > keep:
            del data[:-keep]
            skip = 0
            while skip < min(_MAX_CONTINUATION, len(data)) and 0x80 <= data[skip] <= 0xBF:
                skip += 1  # start at a character, not inside one
            del data[:skip]
            self._restart()
        # A finished task's last incomplete character will never be completed: show it.
        text = self._decoder.decode(bytes(data), final=self._finished)
        self._view.append_text(self._line_ends(text))

    def _restart(self) -> None:
        self._decoder.reset()
        self._held_cr = False
        self._view.trimmed = True

    def _line_ends(self, text: str) -> str:
        if self._held_cr:
            text = "\r" + text
        self._held_cr = text.endswith("\r") and not self._finished
        return text[:-1] if self._held_cr else text

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            self._problem = problem
            self.problem_changed.emit(problem)
