"""CPU per ``POST /tasks`` through Taskdesk's real WSGI app, without sockets or HTTP parsing:
``python -m benchmarks.post_cpu``.

Opens Taskdesk as ``program.py`` does (``open_engine``: the store, the service, the event log,
the worker pool started with its defaults) and calls the bottle app ``create_app`` builds
directly, from THREADS threads, N times in all, with the body of case 3. Prints POSTs/s, the
process's CPU per POST (user and system, from ``getrusage``) and its voluntary and involuntary
context switches per POST. It isolates what the API and the store cost from what cheroot
costs (cases 3 and 4 measure the whole), and the switch counts show wake-ups (the group
commit's hand-offs) that req/s on a shared machine hides. A tool for comparing revisions,
not a case of the suite.

    python -m benchmarks.post_cpu [--n 8000] [--threads 16] [--synchronous full|normal]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import threading
import time
from typing import Any

BODY = b'{"action":"noop","data":{"x":"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy","n":1}}'
WARM_UP = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = parser.parse_args()

    from PySide6.QtCore import QCoreApplication

    from program import open_engine
    from service.api import LOOPBACK_NAMES, ApiConfig, create_app
    from service.settings import parse_settings

    _app = QCoreApplication([])
    folder = tempfile.mkdtemp()
    settings = parse_settings(["--headless", "--db", f"{folder}/tasks.db", "--port", "0",
                               "--synchronous", args.synchronous])
    engine = open_engine(settings)
    engine.pool.start()
    app = create_app(engine.service, ApiConfig(allowed_hosts=LOOPBACK_NAMES,
                                               events=engine.events, version="bench"))

    def post() -> None:
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/tasks", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080", "HTTP_HOST": "127.0.0.1:8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": io.BytesIO(BODY), "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
        }
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            statuses.append(status)

        b"".join(app(environ, start_response))
        if not statuses[0].startswith("202"):
            raise SystemExit(f"POST /tasks answered {statuses[0]}")

    for _ in range(WARM_UP):
        post()
    per_thread = args.n // args.threads

    def loop() -> None:
        for _ in range(per_thread):
            post()

    threads = [threading.Thread(target=loop) for _ in range(args.threads)]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    n = per_thread * args.threads
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    print(f"{args.synchronous}, {args.threads} threads, {n} POSTs: {n / took:,.0f} POST/s; "
          f"CPU {1e6 * (user + system) / n:.0f} µs per POST (user {1e6 * user / n:.0f}, "
          f"system {1e6 * system / n:.0f}); context switches per POST: voluntary "
          f"{(after.ru_nvcsw - before.ru_nvcsw) / n:.1f}, involuntary "
          f"{(after.ru_nivcsw - before.ru_nivcsw) / n:.1f}")
    engine.pool.stop(5)
    engine.store.close()
    os._exit(0)  # the API's and the pool's threads need no orderly end here


if __name__ == "__main__":
    main()
