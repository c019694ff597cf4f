"""Command-line options, each also read from an environment variable ``TASKDESK_<NAME>``."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from service.version import VERSION

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    headless: bool
    host: str
    port: int
    db: Path
    workers: int
    prefetch: int
    work_delay: float
    task_timeout: float
    max_attempts: int
    retry_backoff: float
    token: str | None
    synchronous: str
    log_level: str

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_db_path() -> Path:
    return platformdirs.user_data_path("taskdesk", appauthor=False) / "tasks.db"


def _bounded(kind: type, low: float, high: float | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int | float:
        try:
            value: int | float = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    def env(name: str, default: str | None) -> str | None:
        return environ.get(f"TASKDESK_{name.upper().replace('-', '_')}", default)

    parser = argparse.ArgumentParser(
        prog="taskdesk",
        description="Taskdesk: a desktop task queue with an embedded REST API. Every option "
        "can also be set with an environment variable TASKDESK_<NAME> (e.g. TASKDESK_PORT); "
        "the command line wins.",
    )
    parser.add_argument("--version", action="version", version=f"taskdesk {VERSION}")
    parser.add_argument("--headless", action="store_true",
                        default=_flag(env("headless", "") or ""),
                        help="run the API and workers without a window")
    parser.add_argument("--host", default=env("host", "127.0.0.1"),
                        help="address the API listens on (default 127.0.0.1; anything beyond "
                        "loopback requires --token)")
    parser.add_argument("--port", type=_bounded(int, 0, 65535), default=env("port", "8080"),
                        help="API port; 0 picks a free one (default 8080)")
    parser.add_argument("--db", type=Path, default=env("db", str(default_db_path())),
                        help="SQLite database file (default: %(default)s)")
    parser.add_argument("--workers", type=_bounded(int, 1, 64), default=env("workers", "2"),
                        help="worker threads (default 2)")
    parser.add_argument("--prefetch", type=_bounded(int, 1, 10000), default=env("prefetch", "64"),
                        help="task ids held in memory ahead of the workers (default 64)")
    parser.add_argument("--work-delay", type=_bounded(float, 0, 3600),
                        default=env("work-delay", "0.1"),
                        help="seconds of simulated work per task, as in the tutorial (default 0.1)")
    parser.add_argument("--task-timeout", type=_bounded(float, 0.1, 86400),
                        default=env("task-timeout", "300"),
                        help="seconds an action may run before its attempt is ended as failed "
                        "and its worker replaced (default 300)")
    parser.add_argument("--max-attempts", type=_bounded(int, 1, 100),
                        default=env("max-attempts", "3"),
                        help="attempts before a task is failed for good (default 3)")
    parser.add_argument("--retry-backoff", type=_bounded(float, 0, 3600),
                        default=env("retry-backoff", "1.0"),
                        help="seconds before the first retry, doubling each time (default 1)")
    parser.add_argument("--token", default=env("token", None),
                        help="require 'Authorization: Bearer TOKEN' on every API request")
    parser.add_argument("--synchronous", choices=("full", "normal"),
                        default=env("synchronous", "full"),
                        help="full: an accepted task survives a power cut (default); normal: "
                        "faster, survives a crash of Taskdesk but maybe not of the machine")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                        default=env("log-level", "INFO"),
                        help="log verbosity (default INFO; task data is logged only at DEBUG)")
    return parser


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    parser = build_parser(os.environ if environ is None else environ)
    ns = parser.parse_args(argv)
    token = ns.token or None
    if not is_loopback(ns.host) and token is None:
        parser.error(
            f"--host {ns.host} would expose the API beyond this machine; "
            "set --token (or TASKDESK_TOKEN) as well"
        )
    return Settings(
        headless=ns.headless,
        host=ns.host,
        port=ns.port,
        db=ns.db.expanduser(),
        workers=ns.workers,
        prefetch=ns.prefetch,
        work_delay=ns.work_delay,
        task_timeout=ns.task_timeout,
        max_attempts=ns.max_attempts,
        retry_backoff=ns.retry_backoff,
        token=token,
        synchronous=ns.synchronous,
        log_level=ns.log_level,
    )
