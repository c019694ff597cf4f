"""A PostgreSQL server for the tests: the one the PG* environment variables name (as
``pg_virtualenv`` sets them; ``scripts/dev.sh test`` starts a throw-away one that way).

A session makes one migrated database; each test gets it emptied (connections left over from
the previous test ended, every table truncated, identities restarted). Measured on the
throw-away cluster of ``scripts/dev.sh test`` (2 cores): 0.06 s per test, where a copy of a
template (``CREATE DATABASE … TEMPLATE``) took 0.35–0.7 s and dropping it 0.1–0.25 s more.
Without a server the PostgreSQL tests skip, saying how to run them; with CI=true they fail
instead, so that CI never passes by skipping them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

HOW = ("PostgreSQL tests need a server: run `scripts/dev.sh test` (it starts a throw-away one "
       "with pg_virtualenv), or `pg_virtualenv -t -- .venv/bin/python -m pytest …`, or set "
       "PGHOST, PGPORT, PGUSER and PGPASSWORD for a server where that user may create "
       "databases")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class PgServer:
    def __init__(self) -> None:
        import psycopg

        self.host = os.environ.get("PGHOST", "")
        self.port = os.environ.get("PGPORT", "5432")
        self.user = os.environ.get("PGUSER", "postgres")
        self._admin = psycopg.connect(dbname=os.environ.get("PGDATABASE", "postgres"),
                                      autocommit=True, connect_timeout=5)
        self.dbname = f"taskdesk_test_{os.getpid()}"
        # Databases by slot: tests and module-wide fixtures each empty their own.
        self.slots: dict[str, str] = {}

    @property
    def admin(self) -> Any:
        """A connection to the server's maintenance database (a new one after a restart)."""
        import psycopg

        if self._admin.closed or self._admin.broken:
            self._admin = psycopg.connect(dbname=os.environ.get("PGDATABASE", "postgres"),
                                          autocommit=True, connect_timeout=5)
        return self._admin

    def url(self, dbname: str) -> str:
        # The password stays in PGPASSWORD (libpq reads it), never in a URL or a log.
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def make_database(self) -> None:
        import psycopg

        from storage.postgres.database import connection_kwargs
        from storage.postgres.migrations import migrate

        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{self.dbname}"')
        with psycopg.connect(self.url(self.dbname), **connection_kwargs()) as conn:
            migrate(conn, self.dbname)

    def fresh_database(self, slot: str = "test") -> str:
        """The database of *slot* (one per test by default; module-wide fixtures use their
        own), emptied; its URL."""
        import psycopg

        name = self.slots.get(slot)
        if name is None:
            name = f"{self.dbname}_{slot}"
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.dbname}"')
            self.slots[slot] = name
        url = self.url(name)
        self.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE tasks, task_deps, task_count_deltas, nodes, "
                         "task_log_chunks, task_log_sizes, schedules RESTART IDENTITY")
            conn.execute("UPDATE task_counts SET n = 0")
            conn.execute("UPDATE queue_state SET paused = false")
        return url

    def query(self, url: str, sql: str, params: Any = ()) -> list[Any]:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []

    def restart_command(self) -> list[str] | None:
        """How to restart the server, when the tests may (a pg_virtualenv cluster, or
        TASKDESK_TEST_PG_RESTART)."""
        if os.environ.get("PG_CLUSTER_CONF_ROOT") and os.environ.get("PGVERSION"):
            # pg_ctl waits at most 60 s by default, which a busy machine's shutdown
            # checkpoint plus start can pass.
            return ["pg_ctlcluster", os.environ["PGVERSION"], "regress", "restart",
                    "--", "-m", "fast", "-t", "180"]
        command = os.environ.get("TASKDESK_TEST_PG_RESTART")
        return command.split() if command else None

    def restart(self) -> None:
        command = self.restart_command()
        assert command is not None
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, (
            f"{' '.join(command)} exited with {done.returncode}: {done.stdout} {done.stderr}")
        self._admin.close()

    def close(self) -> None:
        for name in [*self.slots.values(), self.dbname]:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()


def connect_server() -> PgServer:
    """The test server, or skip (fail under CI) saying why there is none."""
    if not os.environ.get("PGHOST"):
        reason = f"no PostgreSQL server (PGHOST is not set). {HOW}"
    else:
        try:
            import psycopg  # noqa: F401

            server = PgServer()
        except Exception as exc:  # psycopg missing, or the server unreachable
            reason = f"cannot reach PostgreSQL at {os.environ.get('PGHOST')}: {exc}. {HOW}"
        else:
            try:
                server.make_database()
            except Exception:
                server.close()
                raise
            return server
    if _in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = connect_server()
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The test database, migrated and empty, for one test."""
    return pg_server.fresh_database()
