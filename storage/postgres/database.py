"""Database: the connection pool every thread of one store shares, and what its failures mean.

Connections are psycopg 3 connections in autocommit mode from a ``psycopg_pool`` pool sized
to the threads that use it (API threads, workers, the window, the store's own writer and
housekeeping). Each sets ``extra_float_digits = 0``, so that PostgreSQL writes a double with
15 significant digits, exactly as ``Task.to_json`` does (times are stored to 15 digits).

Failures are mapped once, here: the server unreachable, restarting, out of disk, read-only or
the pool exhausted is ``StorageUnavailableError`` (try again later: 503); a server reporting
corrupted data is ``DatabaseDamagedError``. A read that fails because its pooled connection
died (the server restarted) is tried once more on a fresh connection: reads change nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseDamagedError, DatabaseError, StorageUnavailableError
from storage.postgres.url import redact, scrub

log = logging.getLogger("taskdesk.storage")

T = TypeVar("T")

# How long a caller waits for a connection (the pool exhausted, the server unreachable)
# before the store gives up with StorageUnavailableError: SQLite's busy timeout.
CONNECT_TIMEOUT_SECONDS = 5.0
# Once a wait has run out, later callers wait only this long until a connection is had
# again: the window reads on its GUI thread, which must not freeze 5 s per read while the
# server is away (the pool keeps reconnecting in the background meanwhile).
DOWN_TIMEOUT_SECONDS = 0.1
RECONNECT_SECONDS = 10.0
# SQLSTATEs of a server that cannot be written right now but may be later: read-only
# transaction (a standby, default_transaction_read_only), and class 53 (disk full, out of
# memory, too many connections) arrives as OperationalError anyway.
_UNAVAILABLE_STATES = frozenset({"25006"})
# data_corrupted, index_corrupted.
_DAMAGE_STATES = frozenset({"XX001", "XX002"})


def connection_kwargs() -> dict[str, Any]:
    return {
        "autocommit": True,
        # Doubles as text with 15 significant digits: what Task.to_json writes.
        "options": "-c extra_float_digits=0",
        "connect_timeout": int(CONNECT_TIMEOUT_SECONDS),
        "application_name": "taskdesk",
    }


class Database:
    def __init__(self, url: str, max_size: int, timeout: float | None = None) -> None:
        self.url = url
        self.location = redact(url)
        self.timeout = CONNECT_TIMEOUT_SECONDS if timeout is None else timeout
        self.down = False  # the last wait for a connection ran out
        # Why the last connection of our own (the listener's) could not be made, if it
        # could not: what a pool timeout is most likely about.
        self.connect_error: str | None = None
        self.pool: ConnectionPool = ConnectionPool(
            url, kwargs=connection_kwargs(), min_size=min(2, max_size), max_size=max_size,
            open=False, timeout=self.timeout, name="taskdesk",
            # After the server went away the pool retries in the background, waiting twice as
            # long each time; giving a series up after 10 s (the next request starts a new
            # one, from a 1 s wait) keeps it from sleeping for minutes once the server is back.
            reconnect_timeout=RECONNECT_SECONDS,
        )

    def open(self) -> None:
        """Open the pool, waiting for a first connection: DatabaseError naming the database
        when there is none to be had (at once when the server refuses one, with its
        reason, rather than after the pool's wait)."""
        problem = self.connect_problem()
        if problem is None:
            try:
                self.pool.open(wait=True, timeout=self.timeout)
                return
            except PoolTimeout:
                problem = self.connect_problem() or "no connection within the timeout"
        self.pool.close()
        raise DatabaseError(f"cannot connect to database {self.location}: {problem}")

    def connect_problem(self) -> str | None:
        """Why a connection cannot be made now, in libpq's words (without the password);
        None when one can."""
        try:
            psycopg.connect(self.url, **connection_kwargs()).close()
        except psycopg.Error as exc:
            return scrub(" ".join(str(exc).split()), self.url)
        return None

    def close(self) -> None:
        self.pool.close()

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (the listener holds one for good)."""
        try:
            conn = psycopg.connect(self.url, **connection_kwargs())
        except psycopg.Error as exc:
            self.connect_error = scrub(" ".join(str(exc).split()), self.url)
            raise self.unavailable(exc) from exc
        self.connect_error = None
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for the block; PoolTimeout when none is free in time."""
        cm = self.pool.connection(DOWN_TIMEOUT_SECONDS if self.down else self.timeout)
        try:
            conn = cm.__enter__()
        except PoolTimeout:
            self.down = True
            raise
        self.down = False
        with contextlib.ExitStack() as stack:
            stack.push(cm)
            yield conn

    def read(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[Any]:
        return self.run(lambda conn: conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """*work(conn)* on a pooled connection, tried once more on another connection when
        this one turned out to be dead; for reads only (and writes safe to repeat)."""
        for attempt in (1, 2):
            try:
                with self.connection() as conn:
                    return work(conn)
            except psycopg.Error as exc:
                if attempt == 1 and _connection_lost(exc):
                    self.pool.check()  # drop the other dead ones too
                    continue
                raise self.translate(exc) from exc
        raise AssertionError("unreachable")

    # -- what failures mean ------------------------------------------------------------------

    def translate(self, exc: psycopg.Error) -> Exception:
        """The store's error for *exc*: StorageUnavailableError, DatabaseDamagedError, or
        *exc* itself (a bug: a statement the server refused)."""
        state = getattr(exc, "sqlstate", None)
        if state in _DAMAGE_STATES:
            return DatabaseDamagedError(f"database {self.location} is damaged: "
                                        f"{scrub(str(exc).strip(), self.url)}")
        if isinstance(exc, psycopg.OperationalError) or state in _UNAVAILABLE_STATES:
            return self.unavailable(exc)
        return exc

    def unavailable(self, exc: BaseException) -> StorageUnavailableError:
        if isinstance(exc, PoolTimeout):
            detail = f"no connection within {self.timeout:g} s"
            if self.connect_error:
                detail += f" ({self.connect_error})"
        else:
            detail = scrub(" ".join(str(exc).split()), self.url) or type(exc).__name__
        return StorageUnavailableError(f"cannot use database {self.location}: {detail}")


def _connection_lost(exc: psycopg.Error) -> bool:
    """The connection died under the statement (the server restarted or went away): the
    server's own shutdown errors, or a client-side failure, which has no SQLSTATE."""
    if isinstance(exc, PoolTimeout):
        return False
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CrashShutdown
                  | pg_errors.CannotConnectNow):
        return True
    return isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None


def connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and _connection_lost(exc)
