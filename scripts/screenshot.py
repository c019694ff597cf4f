"""Render Taskdesk's real MainWindow offscreen over a demo database and save it as a PNG.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot.py [--tray-menu] [OUT.png]

OUT defaults to docs/screenshot.png (docs/tray-menu.png with --tray-menu, which also shows the
tray icon's menu, rendered beside the window: offscreen there is no tray, so the picture says
that it is a composition). Everything happens in a temporary folder (database and
window settings), so neither the user's data nor their window layout is touched. The tasks are
made through the real service: completed and failed ones by running their actions, cancelled
ones by cancelling, running ones on a real worker pool whose action waits until the picture is
taken, and queued ones simply submitted. The running tasks' progress and the selected one's log
are reported through the service and the store, as a worker does for an action that reports
them (one of them is asked to stop). A simulated clock spreads the times over the last twenty
minutes, and the chart gets a synthetic three-minute history (waiting three real minutes for
one picture would make the script useless). The compose panel shows the form generated from
``render-video``'s schema. The status bar shows the default API address; no server is started.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from any folder
    sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QRect, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gui.main_window import AppInfo, MainWindow  # noqa: E402
from service.actions import Action, RunContext, default_registry  # noqa: E402
from service.metrics import RateHistory  # noqa: E402
from service.task_service import TaskService  # noqa: E402
from service.version import VERSION  # noqa: E402
from service.workers import WorkerPool  # noqa: E402
from storage import Progress, TaskQuery, TaskStatus  # noqa: E402
from storage.sqlite import SqliteTaskStore, migrate, open_connection  # noqa: E402

SIZE = (1280, 800)
WORKERS = 4
DEADLINE_SECONDS = 20.0

RENDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "path", "title": "Video file",
                 "description": "The clip to render"},
        "preset": {"enum": ["720p", "1080p", "4k"], "default": "1080p", "title": "Preset"},
        "quality": {"type": "integer", "minimum": 1, "maximum": 10, "default": 8,
                    "title": "Quality", "description": "1 (smallest) to 10 (best)"},
        "audio": {"type": "boolean", "default": True, "title": "Keep audio"},
    },
}
# How far each running render is (None: it has not said), and what it says.
RENDER_PROGRESS: list[tuple[float | None, str | None]] = [
    (0.72, "Encoding frame 1,728 of 2,400"),
    (0.38, "Encoding frame 912 of 2,400"),
    (0.11, "Encoding frame 264 of 2,400"),
    (None, "Probing the input"),
]


class SimClock:
    """A wall clock the script moves by hand, so tasks look spread over the last minutes."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _fetch_url(data: dict[str, Any], ctx: RunContext) -> Any:
    raise ConnectionError(f"connection refused: {data.get('url', '?')}")


def _make_service(store: SqliteTaskStore, clock: SimClock, release: threading.Event) -> TaskService:
    registry = default_registry()
    registry.register(Action("fetch-url", "always fails", {"type": "object"}, "python",
                             _fetch_url, "screenshot script"))

    def render_video(data: dict[str, Any], ctx: RunContext) -> Any:
        release.wait(DEADLINE_SECONDS)  # keeps a worker busy until the picture is taken
        return {"output": f"{data.get('file', 'video')}.mp4"}

    registry.register(Action("render-video", "Render a clip with ffmpeg", RENDER_SCHEMA,
                             "python", render_video, "screenshot script"))
    return TaskService(store, registry, max_attempts=3, backoff_base=30.0, clock=clock)


def _demo_tasks(rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """(fate, action, data), oldest first."""
    words = ["hello world", "quarterly report", "release notes v2", "invoice 2024-117",
             "weekly digest", "meeting agenda", "taskdesk rocks", "draft reply to ana"]
    people = ["ana@example.com", "li.wei@example.org", "sam@example.net", "ops@example.com"]
    tasks: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(96):
        roll = rng.random()
        fate = ("failed" if roll < 0.18 else "cancelled" if roll < 0.32 else "completed")
        if fate == "failed":
            url = rng.choice(["https://feeds.example.invalid/news.xml",
                              "https://api.example.invalid/v1/rates"])
            tasks.append((fate, "fetch-url", {"url": url}))
        elif i % 4 == 0:
            tasks.append((fate, "sum", {"numbers": [rng.randint(1, 500) for _ in range(
                rng.randint(2, 6))]}))
        elif i % 4 == 1:
            tasks.append((fate, "send-email", {"to": rng.choice(people),
                                               "subject": rng.choice(words).title()}))
        elif i % 4 == 2:
            tasks.append((fate, "thumbnail", {"path": f"photos/IMG_{2000 + i}.jpg",
                                              "size": 256}))
        else:
            tasks.append((fate, "uppercase", {"text": rng.choice(words)}))
    return tasks


def populate(service: TaskService, clock: SimClock, rng: random.Random) -> None:
    """Completed, failed and cancelled tasks, oldest first, through the service."""
    for fate, action, data in _demo_tasks(rng):
        clock.advance(rng.uniform(4, 14))
        task = service.submit(action, data)
        if fate == "cancelled":
            clock.advance(rng.uniform(0.5, 5))
            service.cancel(task.id)
            continue
        attempts = 3 if fate == "failed" else 1
        for _ in range(attempts):
            clock.advance(rng.uniform(0.05, 1.5))
            due = service.next_due()  # a retry waits for its backoff
            if due is not None:
                clock.advance(max(0.0, due - clock.now))
            claimed = service.settle([], 1).claimed  # this task: the only one queued
            if not claimed:
                break
            clock.advance(rng.expovariate(1 / 0.4))
            service.settle([service.run(claimed[0])], 0)


def synthetic_rates(rng: random.Random, seconds: int = 180) -> RateHistory:
    """A believable three-minute history of completions and failures per second."""
    offset = [0.0]
    history = RateHistory(clock=lambda: time.monotonic() + offset[0])
    for s in range(-seconds, 0):
        offset[0] = float(s)
        wave = 9 + 5 * math.sin(s / 17) + 3 * math.sin(s / 5.3)
        burst = 10 if -95 < s < -80 else 0
        history.record(completed=max(0, round(wave + burst + rng.uniform(-2, 2))),
                       failed=1 if rng.random() < 0.12 else 0)
    offset[0] = 0.0
    return history


def _render_log(frames: int) -> bytes:
    """What an ffmpeg-like render prints up to *frames* frames."""
    lines = ["Input #0, mov, from 'clip-01.mov':",
             "  Duration: 00:01:40.00, start: 0.000000, bitrate: 18012 kb/s",
             "  Stream #0:0: Video: h264, yuv420p, 1920x1080, 24 fps",
             "Output #0, mp4, to 'clip-01.mp4':"]
    lines += [f"frame={n:5d} fps=24.{n % 7} size={n * 41:6d}kB "
              f"time=00:{n // 24 // 60:02d}:{n // 24 % 60:02d} speed=1.0{n % 9}x"
              for n in range(96, frames + 1, 96)]
    return ("\n".join(lines) + "\n").encode()


def report_running(service: TaskService, store: SqliteTaskStore) -> str:
    """Progress of every running render, a log for the furthest one, a stop asked of the
    last; returns the furthest one's id."""
    running = sorted(store.page(TaskQuery(status=TaskStatus.RUNNING), WORKERS),
                     key=lambda t: t.seq)
    reports = [Progress(t.id, t.attempts, fraction, message)
               for t, (fraction, message) in zip(running, RENDER_PROGRESS, strict=False)]
    service.set_progress(reports)
    store.append_log(running[0].id, _render_log(1728))
    service.cancel(running[-1].id)  # shows "Cancelling…" until the picture is taken
    return running[0].id


def _wait(condition: Any, app: QApplication) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo database did not reach the expected state")
        app.processEvents()
        time.sleep(0.01)


def with_tray_menu(window: MainWindow) -> QPixmap:
    """The window below a desktop's top panel, with the real tray menu open from the tray
    icon at the panel's right end, over the window as on a desktop; the panel says that the
    picture is composed."""
    shot = window.grab()
    ratio = shot.devicePixelRatio()
    window.tray.refresh()
    menu = window.tray.menu
    menu.adjustSize()
    menu_shot = menu.grab()
    panel_h = 30
    width, height = window.width(), panel_h + window.height()
    picture = QPixmap(round(width * ratio), round(height * ratio))
    picture.setDevicePixelRatio(ratio)
    picture.fill(QColor("#1f232b"))
    painter = QPainter(picture)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.drawPixmap(0, panel_h, shot)
    # The panel: a caption on the left, the tray icon (in its current state) on the right.
    font = QFont(window.font())
    painter.setFont(font)
    painter.setPen(QColor("#aeb6c4"))
    painter.drawText(QRect(12, 0, width - 80, panel_h), Qt.AlignmentFlag.AlignVCenter,
                     "Composed offscreen, where there is no tray: the real window, and the real "
                     "tray menu (gui/tray.py) drawn where a desktop would open it")
    icon_x = width - 40
    painter.fillRect(QRect(icon_x - 6, 0, 34, panel_h), QColor("#3b4252"))  # the open icon
    painter.drawPixmap(icon_x, 4, window.tray.icon_for(window.tray.state).pixmap(22, 22))
    menu_x, menu_y = width - menu.width() - 8, panel_h + 2
    for spread in range(6, 0, -1):  # a soft shadow, as menus have
        shade = QColor(0, 0, 0, 14)
        painter.fillRect(QRect(menu_x - spread + 3, menu_y - spread + 5,
                               menu.width() + 2 * spread, menu.height() + 2 * spread), shade)
    painter.drawPixmap(menu_x, menu_y, menu_shot)
    painter.end()
    return picture


def main(argv: list[str]) -> int:
    args = argv[1:]
    tray_menu = "--tray-menu" in args
    args = [a for a in args if a != "--tray-menu"]
    default = "tray-menu.png" if tray_menu else "screenshot.png"
    out = Path(args[0]) if args else ROOT / "docs" / default
    out.parent.mkdir(parents=True, exist_ok=True)
    # The demo fails tasks on purpose; their warnings are noise here.
    logging.getLogger("taskdesk").setLevel(logging.ERROR)
    app = QApplication.instance() or QApplication(argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Taskdesk")
    rng = random.Random(20240601)

    with tempfile.TemporaryDirectory(prefix="taskdesk-shot-") as tmp:
        db_path = Path(tmp) / "tasks.db"
        conn = open_connection(db_path)
        migrate(conn, db_path)
        conn.close()
        store = SqliteTaskStore(db_path, "normal")
        clock = SimClock(time.time() - 60 * 60)  # all in the past: nothing looks due later
        release = threading.Event()
        service = _make_service(store, clock, release)
        populate(service, clock, rng)
        service.rates = synthetic_rates(rng)

        # Running: the oldest queued tasks, taken by a real pool and held until the end.
        for n in range(WORKERS):
            clock.advance(rng.uniform(2, 6))
            service.submit("render-video", {"file": f"clip-{n + 1:02d}", "preset": "1080p"})
        clock.now = max(clock.now, time.time() - 40)
        pool = WorkerPool(service, WORKERS, prefetch=1, work_delay=0)
        pool.start()
        _wait(lambda: service.counts()[TaskStatus.RUNNING] == WORKERS, app)
        selected = report_running(service, store)

        # Queued: newest, waiting for a free worker; one waits to retry after a failure.
        for i in range(22):
            clock.advance(rng.uniform(0.5, 2))
            if i % 3 == 0:
                service.submit("sum", {"numbers": [rng.randint(1, 99) for _ in range(4)]})
            elif i % 3 == 1:
                service.submit("uppercase", {"text": rng.choice(["good morning", "ship it"])})
            else:
                service.submit("send-email", {"to": "team@example.com", "subject": "Standup"})
        clock.now = time.time()

        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        info = AppInfo(version=VERSION, db_path=Path("~/.local/share/taskdesk/tasks.db"),
                       api_url="http://127.0.0.1:8080", api_error=None, token=None)
        window = MainWindow(service, pool, info, settings=settings)
        window.resize(*SIZE)
        window.show()
        window.refresh_now()
        app.processEvents()

        compose = window.compose
        compose.action_combo.setCurrentText("render-video")
        compose.json_edit.setPlainText(
            '{"file": "/home/ana/Videos/holiday.mov", "preset": "4k", "quality": 9, '
            '"audio": true}')

        row = window.model.row_of(selected)
        if row is not None:
            window.table.selectRow(row)
        window.table.setFocus()
        window.feed.flush()
        window.refresh_now()
        log = window.details.log_view
        _wait(lambda: log.height() > 0 and log.toPlainText().endswith("x\n"), app)
        for _ in range(5):
            app.processEvents()

        image = with_tray_menu(window) if tray_menu else window.grab()
        ok = image.save(str(out))
        window.shutdown()
        window.close()
        release.set()
        pool.stop(DEADLINE_SECONDS)
        store.close()
    if not ok:
        print(f"could not write {out}", file=sys.stderr)
        return 1
    print(f"saved {out} ({image.width()}x{image.height()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
