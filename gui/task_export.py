"""TaskExporter: the window's Export — the tasks shown (the current filter and order, every
matching task, not only the rows loaded) or the selected ones, to a CSV or JSON file.

Threads: the file is written on a thread of its own, a page of tasks at a time (the service's
keyset pages and service/export.py's serialisation, the API's too), so a big export neither
freezes the window nor holds every task in memory; ``finished`` and ``failed`` reach the GUI
thread as queued signals. It writes to ``<file>.part`` and renames it when complete, so a
failed export never leaves a file that looks whole (nor destroys the one it would replace).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from service.export import chunks, format_of
from service.task_service import TaskService
from storage import Task, TaskQuery

# The file dialog's choices; the extension typed wins over the filter chosen.
FILTERS = {"csv": "CSV files (*.csv)", "json": "JSON files (*.json)"}
PAGE = 1000


def ask_path(parent: QWidget, title: str, suggested: str) -> tuple[Path, str] | None:
    """Ask where to save: (path, format), or None when cancelled. A name without a known
    extension gets the one of the filter chosen."""
    name, chosen = QFileDialog.getSaveFileName(parent, title, suggested,
                                               ";;".join(FILTERS.values()))
    if not name:
        return None
    fmt = format_of(name)
    if fmt is None:
        fmt = next((f for f, text in FILTERS.items() if text == chosen), "csv")
        name += "." + fmt
    return Path(name), fmt


class TaskExporter(QObject):
    # (path, how many tasks): written and complete.
    finished = Signal(str, int)
    # (path, what went wrong, in words for the user).
    failed = Signal(str, str)

    def __init__(self, service: TaskService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._service = service
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, query: TaskQuery, path: Path, fmt: str) -> None:
        """Write the tasks of *query*, in its order, to *path* as *fmt*, on a thread."""
        self._thread = threading.Thread(target=self._write, args=(query, path, fmt),
                                        name="taskdesk-export", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _write(self, query: TaskQuery, path: Path, fmt: str) -> None:
        part = path.with_name(path.name + ".part")
        count = [0]

        def counted() -> Iterator[list[Task]]:
            for page in self._service.iter_pages(query, PAGE):
                count[0] += len(page)
                yield page

        try:
            with open(part, "w", encoding="utf-8", newline="") as out:
                for piece in chunks(counted(), fmt):
                    out.write(piece)
            os.replace(part, path)
        except Exception as exc:  # a file or a database that failed: said, not raised
            with contextlib.suppress(OSError):
                part.unlink()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.failed.emit(str(path), reason)
            return
        self.finished.emit(str(path), count[0])
