"""The practical limit of Taskdesk's architecture, as a reference point: a bare bottle app on
cheroot in one CPython process, inserting each ``POST /tasks`` into SQLite and completing it
with plain worker threads. It validates nothing, does not fsync (``synchronous=NORMAL`` by
default) and keeps no other promise; Taskdesk's HTTP figures are measured against it in the
same run. Our own minimal equivalent of ../shared/bench/proto_app.py (same work per request,
same server settings), so the suite depends on nothing outside this repository.

    python -m benchmarks.bare_app --db /tmp/bare.db [--port 0] [--threads 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sqlite3
import sys
import threading
import time
import uuid
from typing import Any

import bottle
from cheroot import wsgi

DDL = ("CREATE TABLE IF NOT EXISTS tasks(id TEXT PRIMARY KEY, payload TEXT NOT NULL, "
       "status TEXT NOT NULL, result TEXT, created_at INTEGER NOT NULL, processed_at INTEGER)")


def make_app(conn: sqlite3.Connection, lock: threading.Lock,
             work: queue.Queue[tuple[str, Any]]) -> bottle.Bottle:
    app = bottle.Bottle()

    @app.post("/tasks")
    def post_task() -> dict[str, Any]:
        body = bottle.request.json
        if not isinstance(body, dict) or "action" not in body:
            bottle.response.status = 400
            return {"error": "expected {action, data}"}
        task_id = str(uuid.uuid4())
        payload = json.dumps({"action": body["action"], "data": body.get("data")})
        with lock:  # the row exists before a worker can see its id
            conn.execute("INSERT INTO tasks(id, payload, status, created_at) "
                         "VALUES (?, ?, 'queued', ?)", (task_id, payload, time.time_ns() // 10**6))
            conn.commit()
        work.put((task_id, body["action"]))
        bottle.response.status = 202
        return {"id": task_id, "status": "queued"}

    return app


def worker(conn: sqlite3.Connection, lock: threading.Lock,
           work: queue.Queue[tuple[str, Any]]) -> None:
    while True:
        task_id, action = work.get()
        result = json.dumps({"ok": True, "action": action})
        with lock:
            conn.execute("UPDATE tasks SET status = 'completed', result = ?, processed_at = ? "
                         "WHERE id = ?", (result, time.time_ns() // 10**6, task_id))
            conn.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_app")
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = parser.parse_args(argv)
    conn = sqlite3.connect(args.db, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {args.synchronous.upper()}")
    conn.execute(DDL)
    conn.commit()
    lock = threading.Lock()
    work: queue.Queue[tuple[str, Any]] = queue.Queue()
    for _ in range(args.workers):
        threading.Thread(target=worker, args=(conn, lock, work), daemon=True).start()
    server = wsgi.Server(("127.0.0.1", args.port), make_app(conn, lock, work),
                         numthreads=args.threads, request_queue_size=1024)
    server.prepare()
    print(f"API listening on http://127.0.0.1:{server.bind_addr[1]}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
