"""Listener: one thread per store LISTENing for what other nodes commit, on a connection of
its own (autocommit, outside the pool), handing it to the store's watchers.

Notifications that arrive together are merged (one re-read of many tasks instead of many
re-reads of one). This node's own are dropped: its service told its subscribers already.
While the connection is down the watchers get None ("re-read everything") every
POLL_SECONDS, the fallback to polling, and once more when it is back, since notifications
sent meanwhile are lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from storage.models import Changes
from storage.postgres.database import Database
from storage.postgres.writer import CHANNEL

log = logging.getLogger("taskdesk.storage")

Watcher = Callable[[Changes | None], None]

WAIT_SECONDS = 0.1  # how often the thread looks whether it should stop
GATHER_SECONDS = 0.005  # how long it waits for more notifications to merge
POLL_SECONDS = 2.0  # while disconnected: how often everything is re-read
MAX_IDS = 1000  # more changed ids than this at once: re-read everything instead


class Listener:
    def __init__(self, db: Database, own_node: Callable[[], str]) -> None:
        self.db = db
        self.own_node = own_node
        self._watchers: list[Watcher] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskdesk-listener",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        with self._lock:
            self._watchers = [*self._watchers, watcher]

        def unwatch() -> None:
            with self._lock:
                self._watchers = [w for w in self._watchers if w is not watcher]

        return unwatch

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def tell(self, changes: Changes | None) -> None:
        for watcher in self._watchers:
            try:
                watcher(changes)
            except Exception:
                log.exception("a watcher of other nodes' changes failed")

    def _run(self) -> None:
        lost = False
        while not self._stop.is_set():
            try:
                conn = self.db.connect()
            except Exception as exc:
                if not lost:
                    log.warning("cannot listen for other nodes' changes (%s); re-reading "
                                "every %g s until the database is back", exc, POLL_SECONDS)
                    lost = True
                self.tell(None)
                self._stop.wait(POLL_SECONDS)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                self.connected.set()
                if lost:
                    log.info("listening for other nodes' changes again")
                    self.tell(None)  # what was sent meanwhile is lost: re-read it all
                    lost = False
                self._listen(conn)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("lost the connection listening for other nodes' changes: %s",
                                " ".join(str(exc).split()))
                    lost = True
                    self.tell(None)
            finally:
                self.connected.clear()
                conn.close()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            first = list(conn.notifies(timeout=WAIT_SECONDS, stop_after=1))
            if not first:
                continue
            notes = first + list(conn.notifies(timeout=GATHER_SECONDS))
            others, changes = self._merge([n.payload for n in notes])
            if others:
                self.tell(changes)

    def _merge(self, payloads: list[str]) -> tuple[bool, Changes | None]:
        """Whether *payloads* hold other nodes' changes, and those (None: re-read
        everything)."""
        own = self.own_node()
        ids: dict[str, None] = {}
        queue = resync = False
        seen = False
        for payload in payloads:
            node, _, rest = payload.partition(" ")
            if node == own:
                continue
            seen = True
            flags, _, listed = rest.partition(" ")
            resync = resync or flags == "*"
            queue = queue or flags == "q"
            if listed:
                ids.update(dict.fromkeys(listed.split(",")))
        if resync or len(ids) > MAX_IDS:
            return seen, None
        return seen, Changes(tuple(ids), queue)
