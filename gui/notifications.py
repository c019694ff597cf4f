"""Desktop notifications: a task failed for good, a task submitted from the window finished,
the database became unavailable; rate-limited and grouped so that a burst never floods the
desktop.

- ``NotificationLimiter`` (no Qt, a clock of its own) decides *when* and *how grouped*: what
  arrives while a kind is quiet is shown after a short gathering delay (half a second, so a
  burst's first moments make one notification, not one each); after that, that kind waits
  ``interval`` seconds (30) and everything that arrived meanwhile becomes one notification
  ("12 tasks failed"). So each kind shows at most one notification per interval, whatever the
  rate of failures.
- ``Notifier`` (GUI thread) feeds it: a service subscriber (any thread) appends the changes it
  cares about to a deque, a 250 ms timer drains the deque into the limiter and gives what is
  due to a ``NotificationSink``. Which kinds are on is read from the Preferences at that
  moment, so switching one off in the dialog takes effect at once.
- The sinks: the tray icon's ``showMessage`` (Qt routes it to the desktop's own notification
  service: org.freedesktop.Notifications on Linux desktops through the StatusNotifierItem
  tray, the Action Center on Windows, Notification Center on macOS), or, where there is no
  tray, the window's status bar.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from gui.formatting import short_id
from gui.preferences import Preferences
from service.events import EventKind, TaskEvent
from service.task_service import TaskService
from storage import Task

log = logging.getLogger("taskdesk.gui")

INTERVAL_SECONDS = 30.0
GATHER_SECONDS = 0.5
DRAIN_MS = 250
SHOWN_ITEMS = 3  # tasks named in a grouped notification; the rest are counted


class NoticeKind(StrEnum):
    FAILED = "failed"  # a task failed for good
    FINISHED = "finished"  # a task submitted from this window finished
    DATABASE = "database"  # the database became unavailable (or damaged)


@dataclass
class Group:
    """What the limiter lets through at once: *count* items of *kind*, the newest named."""

    kind: NoticeKind
    count: int = 0
    items: list[str] = field(default_factory=list)
    first_at: float = 0.0

    def add(self, item: str) -> None:
        self.count += 1
        self.items.append(item)
        del self.items[:-SHOWN_ITEMS]


class NotificationLimiter:
    """Per kind: the first group after a quiet spell goes out ``gather`` seconds after its
    first item; then nothing of that kind for ``interval`` seconds, and what came meanwhile
    goes out as one group."""

    def __init__(self, interval: float = INTERVAL_SECONDS, gather: float = GATHER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.gather = gather
        self.clock = clock
        self._pending: dict[NoticeKind, Group] = {}
        self._last_shown: dict[NoticeKind, float] = {}

    def add(self, kind: NoticeKind, item: str) -> None:
        group = self._pending.get(kind)
        if group is None:
            group = self._pending[kind] = Group(kind, first_at=self.clock())
        group.add(item)

    def ready_at(self, kind: NoticeKind) -> float | None:
        """When the pending group of *kind* may be shown (None: nothing pending)."""
        group = self._pending.get(kind)
        if group is None:
            return None
        last = self._last_shown.get(kind)
        quiet_until = -float("inf") if last is None else last + self.interval
        return max(group.first_at + self.gather, quiet_until)

    def due(self) -> list[Group]:
        """The groups that may be shown now (and are, as far as the limiter knows)."""
        now = self.clock()
        shown = []
        for kind in list(self._pending):
            ready = self.ready_at(kind)
            if ready is not None and ready <= now:
                shown.append(self._pending.pop(kind))
                self._last_shown[kind] = now
        return shown

    def drop(self, kind: NoticeKind) -> None:
        """Forget what is pending of *kind* (switched off meanwhile)."""
        self._pending.pop(kind, None)


class NotificationSink(Protocol):
    def notify(self, kind: NoticeKind, title: str, text: str) -> None: ...


def describe(group: Group) -> tuple[str, str]:
    """(title, text) of a group, in the words of its kind."""
    n = group.count
    named = ", ".join(group.items) if n <= len(group.items) else (
        ", ".join(group.items) + f" and {n - len(group.items):,} more")
    if group.kind is NoticeKind.FAILED:
        return ("Task failed" if n == 1 else f"{n:,} tasks failed"), named
    if group.kind is NoticeKind.FINISHED:
        return ("Your task finished" if n == 1 else f"{n:,} of your tasks finished"), named
    # The database: the newest problem says what is wrong now.
    again = "" if n == 1 else f" (unavailable {n:,} times since the last notice)"
    return "Database unavailable", group.items[-1] + again


def task_item(task: Task, with_error: bool) -> str:
    text = f"{task.action} {short_id(task.id)}"
    if with_error and task.error:
        first_line = task.error.splitlines()[0] if task.error.strip() else task.error
        text += f": {first_line[:120]}"
    elif not with_error:
        text += f" {task.status}"
    return text


class Notifier(QObject):
    """Turns the service's changes and the database's health into notifications."""

    # How many tasks failed for good since the last tick (for the tray's "failed" state),
    # whether failure notifications are on or not.
    tasks_failed = Signal(int)

    def __init__(
        self,
        service: TaskService,
        preferences: Preferences,
        sink: NotificationSink,
        parent: QObject | None = None,
        *,
        limiter: NotificationLimiter | None = None,
    ) -> None:
        super().__init__(parent)
        self.preferences = preferences
        self.sink = sink
        self.limiter = limiter or NotificationLimiter()
        self._watched: set[str] = set()  # ids of tasks submitted from the window, unfinished
        self._watched_lock = threading.Lock()
        self._database_problem: str | None = None
        changes: deque[tuple[NoticeKind, Task]] = deque()
        self._changes = changes
        watched, watched_lock = self._watched, self._watched_lock

        # On whichever thread made the change; touches no Qt object (see change_feed.py).
        def listener(event: TaskEvent) -> None:
            task = event.task
            if task is None or not task.status.is_finished:
                return
            if event.kind is EventKind.FAILED:
                changes.append((NoticeKind.FAILED, task))
            if event.kind in (EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED):
                with watched_lock:
                    mine = task.id in watched
                    watched.discard(task.id)
                if mine:
                    changes.append((NoticeKind.FINISHED, task))

        self._unsubscribe = service.subscribe(listener)
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    def enabled(self, kind: NoticeKind) -> bool:
        p = self.preferences
        return {NoticeKind.FAILED: p.notify_failed, NoticeKind.FINISHED: p.notify_finished,
                NoticeKind.DATABASE: p.notify_database}[kind]

    def watch(self, task_ids: Iterable[str]) -> None:
        """Tell when these tasks (submitted from the window) finish."""
        if not self.preferences.notify_finished:
            return  # not remembered: switching it on later covers later submissions
        with self._watched_lock:
            self._watched.update(task_ids)

    def database_problem(self, problem: str | None) -> None:
        """The window's database indicator changed (gui/database_status.py): tell when it
        goes from fine to a problem, not at every change of the problem's words."""
        was, self._database_problem = self._database_problem, problem
        if problem is not None and was is None and self.enabled(NoticeKind.DATABASE):
            self.limiter.add(NoticeKind.DATABASE, problem.removeprefix("⚠ "))

    def flush(self) -> None:
        """Drain the changes into the limiter and show what is due (also called directly)."""
        failed = 0
        while self._changes:
            kind, task = self._changes.popleft()
            if kind is NoticeKind.FAILED:
                failed += 1
            if self.enabled(kind):
                self.limiter.add(kind, task_item(task, with_error=kind is NoticeKind.FAILED))
        for kind in NoticeKind:
            if not self.enabled(kind):
                self.limiter.drop(kind)
        if failed:
            self.tasks_failed.emit(failed)
        for group in self.limiter.due():
            title, text = describe(group)
            log.info("notification: %s: %s", title, text)
            self.sink.notify(group.kind, title, text)

    def stop(self) -> None:
        self._timer.stop()
        self._unsubscribe()
        self._changes.clear()


class StatusBarSink:
    """Where there is no tray, and so no notifications: the window's status bar says it."""

    def __init__(self, show_message: Callable[[str], None]) -> None:
        self._show = show_message

    def notify(self, kind: NoticeKind, title: str, text: str) -> None:
        self._show(f"{title}: {text}")

