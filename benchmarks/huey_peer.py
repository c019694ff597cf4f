"""The peer of the HTTP pipeline case: huey behind the same kind of HTTP API as Taskdesk's.

    python -m benchmarks.huey_peer --db FILE [--port 0] [--workers 2]

One process serves a bottle app on cheroot (16 threads, listen backlog 1024, as Taskdesk's
ApiServer) whose ``POST /tasks`` checks ``Content-Type: application/json``, decodes
``{"action", "data"}``, enqueues a huey task and answers ``202 {"id", "status": "queued"}``.
The same process runs a ``SqliteHuey`` consumer (huey's defaults: WAL, SQLite's default
``synchronous``) with ``--workers`` thread workers. The task is a no-op that returns a small
dict, stored in huey's result store (its ``kv`` table), so completions are counted from the
database file, and the backlog from huey's ``task`` table. Logs ``API listening on
http://HOST:PORT`` to stderr like Taskdesk; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import bottle
from cheroot import wsgi
from huey import SqliteHuey


def create_app(enqueue: Callable[[str, dict[str, Any]], str]) -> bottle.Bottle:
    app = bottle.Bottle()

    def reply(status: int, body: dict[str, Any]) -> NoReturn:
        raise bottle.HTTPResponse(body=json.dumps(body, separators=(",", ":")), status=status,
                                  headers={"Content-Type": "application/json"})

    @app.post("/tasks")
    def submit() -> NoReturn:
        request = bottle.request
        if request.content_type.split(";", 1)[0].strip().lower() != "application/json":
            reply(415, {"error": "Content-Type must be application/json"})
        try:
            body = json.loads(request.body.read())
        except ValueError:
            reply(400, {"error": "invalid JSON"})
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            reply(400, {"error": "action required"})
        data = body.get("data") or {}
        if not isinstance(data, dict):
            reply(400, {"error": "data must be a JSON object"})
        reply(202, {"id": enqueue(body["action"], data), "status": "queued"})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="huey behind a bottle/cheroot POST /tasks")
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    huey = SqliteHuey("bench", filename=args.db)

    @huey.task()
    def noop(action: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"output": "processed"}

    def enqueue(action: str, data: dict[str, Any]) -> str:
        return str(noop(action, data).id)

    consumer = huey.create_consumer(workers=args.workers, worker_type="thread", periodic=False)
    consumer.start()
    server = wsgi.Server(("127.0.0.1", args.port), create_app(enqueue), numthreads=16,
                         request_queue_size=1024)
    server.prepare()
    thread = threading.Thread(target=server.serve, name="huey-peer-api", daemon=True)
    thread.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    host, port = server.bind_addr[:2]
    print(f"huey peer: API listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        thread.join(10)
        consumer.stop(graceful=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
