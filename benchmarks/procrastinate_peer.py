"""The PostgreSQL peer: procrastinate draining a backlog of no-op tasks, in a fresh process.

    python -m benchmarks.procrastinate_peer URL N WORKERS

On the (fresh) database at URL: procrastinate's schema applied, N jobs of a no-op task
deferred in one batch, then a worker with WORKERS concurrent slots run until the queue is
empty (``wait=False``). Prints one JSON line {"n", "seconds", "per_second"}, timed from the
worker's start until it returns; the jobs' final states are checked first (all succeeded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import procrastinate
import psycopg


async def run(url: str, n: int, workers: int) -> float:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    def noop(i: int) -> dict[str, Any]:
        return {"output": "processed", "i": i}

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, n, 10_000):
            jobs: list[dict[str, Any]] = [{"i": i} for i in range(start, min(n, start + 10_000))]
            await noop.batch_defer_async(*jobs)
        started = time.perf_counter()
        await app.run_worker_async(concurrency=workers, wait=False,
                                   install_signal_handlers=False)
        return time.perf_counter() - started


def main() -> None:
    url, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    seconds = asyncio.run(run(url, n, workers))
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs "
                           "WHERE status = 'succeeded'").fetchone()
    done = row[0] if row else 0
    if done != n:
        raise SystemExit(f"{done} of {n} jobs succeeded")
    print(json.dumps({"n": n, "seconds": seconds, "per_second": n / seconds}))


if __name__ == "__main__":
    main()
