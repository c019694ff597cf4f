"""Taskdesk's real window, offscreen, in a fresh process: first paint and event-loop stalls.

    python -m benchmarks.window_probe first-paint --db FILE
    python -m benchmarks.window_probe under-load --db FILE --duration 10 --rate 1000

Both wire Taskdesk exactly as ``program.py`` does for a window (``open_engine``, API on port 0,
workers, ``MainWindow``, ``show``), log at Taskdesk's default level (INFO, to this process's
stderr), keep window settings in a temporary file, and print one JSON line.

first-paint: the clock starts just before ``QApplication`` is constructed (after the imports)
and stops when the table viewport's first paint event *with rows loaded* has been delivered:
an event filter on ``window.table.viewport()`` sees the ``QEvent.Paint``, and a zero-delay
timer queued from it, which runs once that paint is done, reads the clock.

under-load: ``--work-delay 0`` and 2 workers. After one second of settling, a separate process
(``benchmarks.http_load`` at ``--rate`` requests/s over 16 keep-alive connections) POSTs tasks
to the window's own API for ``--duration`` seconds. Meanwhile a 5 ms ``Qt.PreciseTimer`` on
the GUI thread records the time between its ticks, from the moment the load process is
started until it has ended; a stall is that interval minus 5 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import percentile

TICK_MS = 5
SETTLE_SECONDS = 1.0
LOAD_CONNECTIONS = 16
LOAD_POLL_MS = 20  # how often the GUI thread looks whether the load process has ended
BODY = '{"action":"noop","data":{"text":"hello"}}'


def _log_like_taskdesk() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def first_paint(db: Path, timeout: float) -> dict[str, Any]:
    from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import AppInfo, MainWindow
    from program import open_engine
    from service.settings import parse_settings
    from service.version import VERSION

    _log_like_taskdesk()
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    app = QApplication(sys.argv[:1])
    marks["application"] = time.perf_counter()
    engine = open_engine(parse_settings(["--db", str(db), "--port", "0"]))
    window: MainWindow | None = None
    try:
        engine.start_api()
        engine.pool.start()
        marks["engine"] = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="taskdesk-probe-") as tmp:
            settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
            info = AppInfo(version=VERSION, db_path=db,
                           api_url=engine.api.url if engine.api else None, api_error=None,
                           token=None)
            window = MainWindow(engine.service, engine.pool, info, settings=settings)
            marks["window"] = time.perf_counter()
            model = window.model

            def painted() -> None:
                marks["first_paint"] = time.perf_counter()
                app.quit()

            class PaintWatch(QObject):
                seen = False

                def eventFilter(self, watched: QObject, event: QEvent) -> bool:
                    if (event.type() == QEvent.Type.Paint and not self.seen
                            and model.rowCount() > 0):
                        self.seen = True
                        QTimer.singleShot(0, painted)  # runs once this paint has been done
                    return False

            watch = PaintWatch()
            window.table.viewport().installEventFilter(watch)
            window.show()
            marks["shown"] = time.perf_counter()
            QTimer.singleShot(int(timeout * 1000), app.quit)
            app.exec()
            rows = model.rowCount()
            window.table.viewport().removeEventFilter(watch)
            window.shutdown()
    finally:
        engine.stop()
    if "first_paint" not in marks:
        raise SystemExit(f"no paint of the table with rows within {timeout:.0f} s")
    result: dict[str, Any] = {f"{k}_ms": (v - t0) * 1000 for k, v in marks.items()}
    result["rows_loaded"] = rows
    result["seconds"] = marks["first_paint"] - t0
    return result


def under_load(db: Path, duration: float, rate: float, timeout: float) -> dict[str, Any]:
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import AppInfo, MainWindow
    from program import open_engine
    from service.settings import parse_settings
    from service.version import VERSION

    _log_like_taskdesk()
    app = QApplication(sys.argv[:1])
    engine = open_engine(parse_settings(["--db", str(db), "--port", "0", "--work-delay", "0"]))
    load: subprocess.Popen[str] | None = None
    intervals: list[float] = []
    counts: dict[str, dict[Any, int]] = {}
    span: dict[str, float] = {}
    try:
        engine.start_api()
        engine.pool.start()
        assert engine.api is not None
        port = engine.api.port
        with tempfile.TemporaryDirectory(prefix="taskdesk-probe-") as tmp:
            settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
            info = AppInfo(version=VERSION, db_path=db, api_url=engine.api.url, api_error=None,
                           token=None)
            window = MainWindow(engine.service, engine.pool, info, settings=settings)
            window.show()
            last = [0.0]

            def tick() -> None:
                now = time.perf_counter()
                if last[0]:
                    intervals.append(now - last[0])
                last[0] = now

            ticker = QTimer()
            ticker.setTimerType(Qt.TimerType.PreciseTimer)
            ticker.setInterval(TICK_MS)
            ticker.timeout.connect(tick)

            watch = QTimer()
            watch.setInterval(LOAD_POLL_MS)

            def load_ended() -> None:
                if load is not None and load.poll() is not None:
                    finish()

            watch.timeout.connect(load_ended)

            def start_load() -> None:
                nonlocal load
                counts["before"] = engine.service.counts()
                span["start"] = time.perf_counter()
                load = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.http_load", "--port", str(port),
                     "--path", "/tasks", "--connections", str(LOAD_CONNECTIONS),
                     "--duration", str(duration), "--rate", str(rate), "--body", BODY,
                     "--expect", "202"],
                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                ticker.start()
                watch.start()

            def finish() -> None:
                # When the load process has ended (its start-up, about half a second, is
                # included: the window is measured from the moment it is asked for load).
                watch.stop()
                ticker.stop()
                counts["after"] = engine.service.counts()
                span["end"] = time.perf_counter()
                app.quit()

            QTimer.singleShot(int(SETTLE_SECONDS * 1000), start_load)
            QTimer.singleShot(int(timeout * 1000), app.quit)
            app.exec()
            window.shutdown()
            window.close()
        load_result: dict[str, Any] = {}
        if load is not None:
            out, _ = load.communicate(timeout=30)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            load_result = json.loads(lines[-1]) if lines else {}
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait(10)
        engine.stop()
    if "after" not in counts:
        raise SystemExit(f"the load run did not finish within {timeout:.0f} s")
    stalls = [max(0.0, i * 1000 - TICK_MS) for i in intervals]
    before, after = counts["before"], counts["after"]
    elapsed = span["end"] - span["start"]
    return {
        "ticks": len(intervals),
        "stall_p99_ms": percentile(stalls, 99),
        "stall_max_ms": max(stalls, default=float("nan")),
        "submitted_per_second": load_result.get("ok", 0) / float(load_result.get("seconds")
                                                                 or duration),
        "completed_per_second": (after["completed"] - before["completed"]) / elapsed,
        "measured_seconds": elapsed,
        "backlog_at_end": after["queued"] + after["running"],
        "load_p99_ms": load_result.get("p99_ms"),
        "load_errors": sum(int(load_result.get(k, 0))
                           for k in ("unexpected", "socket_errors", "timeouts")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="measure Taskdesk's window offscreen")
    parser.add_argument("mode", choices=("first-paint", "under-load"))
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.mode == "first-paint":
        result = first_paint(args.db, args.timeout)
    else:
        result = under_load(args.db, args.duration, args.rate, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
