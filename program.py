"""Taskdesk the program: the one place that wires storage, service, API and window together.

main.py (the ``taskdesk`` command) imports this module only when Taskdesk is to run, so that
its subcommands, which talk to a running Taskdesk over HTTP, load none of Qt or the server.

Start-up, the same for the window and headless: the settings (read by main.py) → read the
schedules of the actions file (a mistake stops us before the database is touched) → open the
database (lock, integrity check, migrations; before any thread starts) → check the schedules'
actions → re-queue work a stopped process left running → start the API (so "port in use"
stops us before any task runs) → start the workers, the scheduler and retention → run the
window or the headless loop. Shut-down reverses it: stop the API (no new work), the scheduler
and retention, stop the workers (running tasks finish, the rest stays queued), close the
database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSocketNotifier, QTimer

from service.actions import ConfigFileError, DuplicateActionError, InvalidActionError
from service.actions.loading import LoadedActions, load_actions
from service.actions.reaper import ProcessReaper
from service.api import LOOPBACK_NAMES, ApiConfig, create_app
from service.api_server import ApiServer, ApiStartError
from service.event_log import EventLog
from service.paths import run_folder
from service.retention import Retention
from service.schedules import (
    Schedule,
    ScheduleError,
    Scheduler,
    check_actions,
    parse_schedules,
)
from service.settings import Settings
from service.task_service import COMMAND_STOP_MARGIN, TaskService
from service.token_file import load_or_create_token, token_path
from service.version import VERSION
from service.workers import WorkerPool
from storage import DatabaseError, TaskStore, open_store

log = logging.getLogger("taskdesk")

SHUTDOWN_TIMEOUT_SECONDS = 10.0
EXIT_OK, EXIT_STARTUP_FAILED = 0, 1
# A run that found its database damaged ends with this code, however gracefully it stops.
EXIT_DATABASE_DAMAGED = 1


class StartupError(Exception):
    """Taskdesk cannot start; the message says what went wrong, naming the file or port."""


@dataclass
class Engine:
    settings: Settings
    store: TaskStore
    service: TaskService
    pool: WorkerPool
    actions: LoadedActions
    scheduler: Scheduler
    retention: Retention
    # The API's token: --token, or, once actions of the user's own can start programs, the
    # one kept beside the database (required on loopback too).
    token: str | None = None
    api: ApiServer | None = None
    api_error: str | None = None
    events: EventLog | None = None  # what GET /events streams

    def start_api(self) -> None:
        s = self.settings
        config = ApiConfig(
            token=self.token,
            allowed_hosts=LOOPBACK_NAMES | {s.host} if s.loopback else None,
            worker_stats=lambda: {"busy": self.pool.busy, "total": self.pool.workers},
            problems=self.problems,
            version=VERSION,
            events=self.events,
            schedules=self.scheduler,
        )
        api = ApiServer(create_app(self.service, config), s.host, s.port)
        try:
            api.start()
        except ApiStartError as exc:
            self.api_error = str(exc)
            raise
        self.api = api
        self.store.announce(api.url)

    def problems(self) -> list[str]:
        found = [f"plugin not loaded: {p}" for p in self.actions.problems]
        found += self.pool.problems()
        if self.store.problem:
            found.append(self.store.problem)
        if self.store.damage:
            found.append(self.store.damage)
        return found

    def database_damaged(self, message: str) -> None:
        """Told by the store, once, on whichever thread found the database damaged: /health
        says so from then on (store.damage) and this run's exit code is not 0."""
        log.error("%s; stop Taskdesk and restore it from a backup", message)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.store.damage is None else EXIT_DATABASE_DAMAGED

    def start_background(self) -> None:
        """The workers, then what submits and deletes on its own: schedules, retention."""
        self.pool.start()
        self.scheduler.start()
        self.retention.start()

    def stop(self) -> None:
        """Stop taking requests, let running tasks finish, close the database."""
        if self.api is not None:
            self.api.stop()
        self.scheduler.stop()
        self.retention.stop()
        # Long enough for a running command to be stopped (SIGTERM, SIGKILL after the
        # grace) and its task given back, rather than left `running` for the next start.
        timeout = max(SHUTDOWN_TIMEOUT_SECONDS, self.settings.kill_grace + COMMAND_STOP_MARGIN)
        finished = self.pool.stop(timeout) if self.pool.started else True
        if finished:
            self.store.close()
        note = "" if finished else " (tasks still running will run again at next start)"
        log.info("Taskdesk stopped%s", note)
        if self.store.damage is not None:
            log.error("database %s was found damaged and left as it is; the next start "
                      "checks it first", self.store.location)
        if not finished or self.pool.blocked:
            # A worker stuck in an action cannot be interrupted; its task is still `running`
            # on disk and the next start re-queues it (or was ended when the worker was given
            # up on). Waiting for it would hang the exit: Qt waits for its pool's threads.
            logging.shutdown()
            os._exit(self.exit_code)


def load_schedules(actions: LoadedActions) -> list[Schedule]:
    """The ``[schedules.<name>]`` tables of the actions file, checked (a mistake names the
    file and the line)."""
    config = actions.config
    if config is None or not config.schedules:
        return []
    try:
        text: str | None = config.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None  # read a moment ago: only the line numbers would be missing
    try:
        return parse_schedules(config.schedules, str(config.path), text)
    except ScheduleError as exc:
        raise StartupError(str(exc)) from exc


def open_engine(settings: Settings) -> Engine:
    """Load the actions, open the database and recover unfinished work; nothing runs yet."""
    log.info("Taskdesk %s, database %s", VERSION, settings.db_location)
    reaper = ProcessReaper(run_folder(settings.db))
    try:
        actions = load_actions(
            unknown=settings.unknown_actions,  # type: ignore[arg-type]
            actions_file=settings.actions,
            plugins=None if settings.no_plugins else settings.plugins,
            entry_points=not settings.no_plugins,
            task_timeout=settings.task_timeout, kill_grace=settings.kill_grace, reaper=reaper,
        )
    except (ConfigFileError, DuplicateActionError, InvalidActionError,
            NotADirectoryError) as exc:
        raise StartupError(str(exc)) from exc
    schedules = load_schedules(actions)  # a mistake in the file stops us before the database
    token = settings.token
    if token is None and actions.user_actions:
        path = token_path(settings.db)
        try:
            token = load_or_create_token(path)
        except OSError as exc:
            raise StartupError(f"cannot read or write the API token file {path}: {exc}") from exc
        log.info("actions of your own can start programs: the API requires the token in %s",
                 path)
    try:
        store = open_store(settings.db, synchronous=settings.synchronous,  # type: ignore[arg-type]
                           lease=settings.lease)
    except DatabaseError as exc:
        raise StartupError(str(exc)) from exc
    # Under the instance lock: commands a Taskdesk killed -9 left behind are ours to end.
    for line in reaper.sweep():
        log.warning("%s", line)
    before, after = store.migrated
    if before != after:
        log.info("database migrated from schema version %d to %d", before, after)
    if store.shared:
        log.info("this Taskdesk is %s on a shared database (lease %g s)", store.identity,
                 settings.lease)
    service = TaskService(store, actions.registry, max_attempts=settings.max_attempts,
                          backoff_base=settings.retry_backoff,
                          task_timeout=settings.task_timeout, kill_grace=settings.kill_grace)
    try:
        check_actions(schedules, service)
    except ScheduleError as exc:
        store.close()
        raise StartupError(str(exc)) from exc
    try:
        service.recover()
    except Exception as exc:
        store.close()
        raise StartupError(
            f"cannot recover unfinished tasks in database {store.location}: {exc}"
        ) from exc
    # Subscribed before the workers, so that a submission is in the event log before the
    # worker it wakes can report starting it.
    events = EventLog.attach(service)
    pool = WorkerPool(service, settings.workers, settings.prefetch, settings.work_delay)
    scheduler = Scheduler(service, schedules)
    retention = Retention(service, settings.keep_completed, settings.keep_failed)
    engine = Engine(settings, store, service, pool, actions, scheduler, retention, token,
                    events=events)
    store.on_damage = engine.database_damaged
    return engine


class SignalQuit:
    """SIGINT/SIGTERM quit the Qt event loop, which then shuts down gracefully.

    Python runs signal handlers only between bytecodes, and Qt's loop runs in C++; the wake-up
    fd makes the loop notice a signal at once instead of at the next unrelated event.
    """

    def __init__(self, app: QCoreApplication) -> None:
        self._app = app
        self.requested = False
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno())
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, app)
        self._notifier.activated.connect(self._drain)

    def _drain(self, *_: object) -> None:
        with contextlib.suppress(BlockingIOError):
            self._reader.recv(64)

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        self.requested = True
        # Queued, so that a signal arriving before the loop runs still ends it once it does.
        QTimer.singleShot(0, self._app.quit)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# What the front end does once the engine runs: show the window (returning when it closes)
# or wait headless; given the app, the engine and the signal handler.
FrontEnd = Callable[[QCoreApplication, Engine, "SignalQuit"], object]


def run(settings: Settings, app: QCoreApplication, front_end: FrontEnd,
        report: Callable[[str], None], *, need_api: bool) -> int:
    """The start-up and shut-down sequence shared by the window and headless runs. A start-up
    problem goes to *report* (stderr, or a dialog) and exits 1; without *need_api* the run
    goes on when the API cannot listen (the window says why)."""
    signals = SignalQuit(app)  # first, so that a stop request during start-up is honoured
    try:
        engine = open_engine(settings)
    except StartupError as exc:
        report(str(exc))
        return EXIT_STARTUP_FAILED
    try:
        try:
            engine.start_api()
        except ApiStartError as exc:
            if need_api:
                report(str(exc))
                return EXIT_STARTUP_FAILED
            log.error("%s", exc)
        engine.start_background()
        if not signals.requested:
            front_end(app, engine, signals)
    finally:
        engine.stop()
    return engine.exit_code


def run_headless(settings: Settings) -> int:
    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])

    def report(message: str) -> None:
        print(f"taskdesk: {message}", file=sys.stderr)

    return run(settings, app, lambda app, _engine, _signals: app.exec(), report, need_api=True)


def run_window(settings: Settings) -> int:
    # Imported here so that headless mode never loads QtWidgets.
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from gui.main_window import AppInfo, MainWindow
    from gui.startup_dialog import show_startup_error

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Taskdesk")
    app.setOrganizationName("Taskdesk")
    app.setApplicationVersion(VERSION)
    # The name of the desktop entry (--install-desktop-entry): Wayland compositors and docks
    # match the window to it by this, for its icon and name.
    QGuiApplication.setDesktopFileName("taskdesk")

    def report(message: str) -> None:
        log.error("%s", message)
        show_startup_error(message)

    def show(app: QCoreApplication, engine: Engine, signals: SignalQuit) -> None:
        info = AppInfo(
            version=VERSION,
            db_path=settings.db if isinstance(settings.db, Path) else settings.db_location,
            api_url=engine.api.url if engine.api else None,
            api_error=engine.api_error,
            token=engine.token,
            load_problems=[str(p) for p in engine.actions.problems],
        )
        window = MainWindow(engine.service, engine.pool, info, schedules=engine.scheduler)
        try:
            window.show()
            if not signals.requested:
                app.exec()
        finally:
            window.shutdown()

    # The window works without the API; its status bar says why the API is not available.
    return run(settings, app, show, report, need_api=False)


def run_program(settings: Settings) -> int:
    """Run Taskdesk with these settings (main.py reads them): the window, or headless."""
    _configure_logging(settings.log_level)
    if settings.headless:
        return run_headless(settings)
    if not _has_display():
        log.warning("no display found (DISPLAY and WAYLAND_DISPLAY are unset): running "
                    "headless, API and workers only; pass --headless to skip this check")
        return run_headless(settings)
    return run_window(settings)
