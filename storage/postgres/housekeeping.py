"""Housekeeping: the store's background thread. Every tick it folds the counts' deltas; every
lease/3 it beats this node's heartbeat (on the database's clock) and rescues the tasks of dead
nodes. Failures (the database unreachable) are reported through the store's problem and
tried again at the next tick."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("taskdesk.storage")

TICK_SECONDS = 1.0


class Housekeeper:
    def __init__(self, lease: float, *, fold: Callable[[], None],
                 heartbeat: Callable[[], None], rescue: Callable[[], None],
                 failed: Callable[[Exception], None]) -> None:
        self.beat_every = lease / 3
        self.tick = min(TICK_SECONDS, self.beat_every)
        self._fold, self._heartbeat, self._rescue = fold, heartbeat, rescue
        self._failed = failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskdesk-housekeeping",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_beat = time.monotonic() + self.beat_every
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            beat = now >= next_beat
            try:
                if beat:
                    next_beat = now + self.beat_every
                    self._heartbeat()
                    self._rescue()
                self._fold()
            except Exception as exc:
                if beat:
                    next_beat = now + self.tick  # try the heartbeat again soon
                self._failed(exc)
