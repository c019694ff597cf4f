"""Process-level tests: ``main.py --headless`` as a real child process, killed, stopped, restarted.

Every child is started with ``sys.executable main.py`` from the repository root, Qt offscreen,
a temporary ``--db`` and ``--port 0`` (the bound port is read from the "API listening on" line).
Every wait is bounded, and every child is killed in the fixture's teardown whatever happens.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from storage import TaskStatus
from storage.sqlite import LATEST_VERSION
from tests.proc_helpers import (
    TIMEOUT,
    StartTaskdesk,
    TaskdeskProcess,
    completed,
    headless,
    read_rows,
    run_taskdesk,
)
from tests.test_migrations import TUTORIAL_SCHEMA

WAIT_MS = int(TIMEOUT * 1000)








def stop_gracefully(proc: TaskdeskProcess) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.log


def snapshot(db: Path, folder: Path) -> Path:
    """Copy a database and its WAL elsewhere, so reading it leaves the original as it is."""
    folder.mkdir()
    for src in (db, db.with_name(db.name + "-wal")):
        if src.exists():
            shutil.copyfile(src, folder / src.name)
    return folder / db.name


def ids_in_log(log: str, message: str) -> list[str]:
    """Task ids of every log line '<message> id=<id> ...', in order, repeats included."""
    return re.findall(re.escape(message) + r" id=([0-9a-f-]+)", log)


def assert_correct_results(rows: dict[str, dict[str, Any]], accepted: dict[str, str]) -> None:
    for task_id, text in accepted.items():
        row = rows[task_id]
        assert row["status"] == "completed", row
        assert row["processed_at"] is not None, row
        assert row["error"] is None, row
        assert json.loads(row["result"]) == {"output": text.upper()}, row


# -- 1. crash safety -------------------------------------------------------------------------


def test_sigkill_while_running_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any
) -> None:
    db = tmp_path / "tasks.db"
    first = start_taskdesk(*headless(db, "--work-delay", "0.05"))
    first.wait_listening()
    api = first.api()
    accepted = api.submit_uppercase(300)
    assert len(accepted) == 300

    qtbot.waitUntil(lambda: completed(api) >= 10, timeout=WAIT_MS)
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL

    # What the kill left on disk: every accepted task, some done, some interrupted. (Read from
    # a copy, so that the restart has to recover the file exactly as the kill left it.)
    at_kill = read_rows(snapshot(db, tmp_path / "at_kill"))
    assert set(at_kill) == set(accepted)
    done_before = {i for i, r in at_kill.items() if r["status"] == "completed"}
    running_at_kill = {i for i, r in at_kill.items() if r["status"] == "running"}
    assert 10 <= len(done_before) < 300, "the kill must come while work is left"
    assert {r["status"] for r in at_kill.values()} <= {"queued", "running", "completed"}

    second = start_taskdesk(*headless(db, "--work-delay", "0"))
    second.wait_listening()
    api2 = second.api()
    qtbot.waitUntil(lambda: completed(api2) == 300, timeout=WAIT_MS)
    stop_gracefully(second)

    rows = read_rows(db)
    assert len(rows) == 300
    assert set(rows) == set(accepted)
    assert_correct_results(rows, accepted)
    # A task interrupted by the kill has its interrupted attempt counted; no other has two.
    twice = {i for i, r in rows.items() if r["attempts"] == 2}
    assert {r["attempts"] for r in rows.values()} <= {1, 2}
    assert twice == running_at_kill
    # A task completed before the kill is neither run nor completed again after the restart.
    run_again = set(ids_in_log(second.log, "processing task"))
    assert run_again == set(accepted) - done_before
    completions = ids_in_log(first.log, "task completed") + ids_in_log(second.log, "task completed")
    assert len(completions) == len(set(completions)), "a task was completed twice"
    for task_id in done_before:
        assert rows[task_id]["processed_at"] == at_kill[task_id]["processed_at"]

    if running_at_kill:
        n = len(running_at_kill)
        assert f"{n} task(s) were running when Taskdesk last stopped; re-queued" in second.log
    else:
        assert "re-queued" not in second.log


# -- 2. graceful stop ------------------------------------------------------------------------


def test_second_instance_on_the_same_database_is_refused(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any
) -> None:
    # Its start-up recovery would re-queue the tasks the first one is running: they would run
    # twice. So it must refuse before touching anything, naming the instance already there.
    db = tmp_path / "tasks.db"
    first = start_taskdesk(*headless(db, "--work-delay", "2"))
    port = first.wait_listening()
    api = first.api()
    accepted = api.submit_uppercase(3)
    qtbot.waitUntil(lambda: api.counts()[TaskStatus.RUNNING] >= 1, timeout=WAIT_MS)

    second = run_taskdesk(list(headless(db, "--work-delay", "0")))
    assert second.returncode != 0
    assert "already in use by another Taskdesk" in second.stderr
    assert f"http://127.0.0.1:{port}" in second.stderr and str(db) in second.stderr
    assert "re-queued" not in second.stderr

    qtbot.waitUntil(lambda: completed(api) == 3, timeout=WAIT_MS)
    stop_gracefully(first)
    rows = read_rows(db)
    assert set(rows) == set(accepted)
    assert all(r["attempts"] == 1 for r in rows.values()), "a task ran twice"


def test_stop_does_not_wait_for_simulated_work(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any
) -> None:
    # Simulated work is interrupted by a stop: the task goes back to the queue with its
    # attempt given back, instead of holding the exit (or being abandoned while running).
    db = tmp_path / "tasks.db"
    proc = start_taskdesk(*headless(db, "--work-delay", "600"))
    proc.wait_listening()
    api = proc.api()
    accepted = api.submit_uppercase(1)
    qtbot.waitUntil(lambda: api.counts()[TaskStatus.RUNNING] == 1, timeout=WAIT_MS)
    stop_gracefully(proc)  # bounded by its own 30 s wait, far below the 600 s of work
    assert "still running" not in proc.log
    [row] = read_rows(db).values()
    assert (row["status"], row["attempts"], row["started_at"]) == ("queued", 0, None)
    assert set(read_rows(db)) == set(accepted)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_windowed_app_stops_gracefully_on_signal(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any, signum: signal.Signals
) -> None:
    # The real window (offscreen platform), not --headless: a signal must close it like the
    # window's own Quit, with exit 0 and every accepted task kept.
    db = tmp_path / "tasks.db"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}  # keep QSettings out of $HOME
    proc = start_taskdesk("--db", str(db), "--port", "0", "--work-delay", "0.05", env=env)
    proc.wait_listening()
    api = proc.api()
    accepted = api.submit_uppercase(40)
    qtbot.waitUntil(lambda: completed(api) >= 3, timeout=WAIT_MS)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 0, proc.log
    assert "Taskdesk stopped" in proc.log and "Traceback" not in proc.log
    rows = read_rows(db)
    assert set(rows) == set(accepted)
    assert {r["status"] for r in rows.values()} <= {"completed", "queued"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_gracefully_and_restart_finishes_the_rest(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any, signum: signal.Signals
) -> None:
    db = tmp_path / "tasks.db"
    first = start_taskdesk(*headless(db, "--work-delay", "0.05"))
    first.wait_listening()
    api = first.api()
    accepted = api.submit_uppercase(100)
    qtbot.waitUntil(lambda: completed(api) >= 5, timeout=WAIT_MS)

    first.send_signal(signum)
    assert first.wait(timeout=30) == 0, first.log
    log = first.log
    assert f"received {signum.name}; shutting down" in log
    assert "API stopped" in log
    assert "workers stopped" in log
    assert "Taskdesk stopped" in log
    assert "still running" not in log
    assert "Traceback" not in log

    rows = read_rows(db)
    assert set(rows) == set(accepted)
    statuses = {r["status"] for r in rows.values()}
    assert "running" not in statuses, "a running task was abandoned by a graceful stop"
    assert statuses <= {"completed", "queued"}
    done = {i: accepted[i] for i, r in rows.items() if r["status"] == "completed"}
    queued = [r for r in rows.values() if r["status"] == "queued"]
    assert done and queued, "the signal must come while work is left"
    assert_correct_results(rows, done)
    assert all(rows[i]["attempts"] == 1 for i in done)
    # The rest was never started: it stays queued, untouched, for the next run.
    assert all(r["attempts"] == 0 and r["started_at"] is None for r in queued)

    second = start_taskdesk(*headless(db, "--work-delay", "0"))
    second.wait_listening()
    api2 = second.api()
    qtbot.waitUntil(lambda: completed(api2) == 100, timeout=WAIT_MS)
    stop_gracefully(second)
    assert "re-queued" not in second.log

    rows = read_rows(db)
    assert len(rows) == 100
    assert_correct_results(rows, accepted)
    assert all(r["attempts"] == 1 for r in rows.values())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_as_soon_as_the_api_listens_stops_gracefully(
    tmp_path: Path, start_taskdesk: StartTaskdesk, signum: signal.Signals
) -> None:
    # A service manager may stop Taskdesk right after it came up; the signal must neither kill
    # it abruptly (default handler still in place) nor be lost (quit before the loop runs).
    proc = start_taskdesk(*headless(tmp_path / "tasks.db", "--work-delay", "0"))
    proc.wait_listening()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{signum.name} was ignored: still running 10 s later; log:\n{proc.log}")
    assert code == 0, f"exit {code}; log:\n{proc.log}"
    assert "Taskdesk stopped" in proc.log
    assert "Traceback" not in proc.log


# -- 3. port in use --------------------------------------------------------------------------


def test_port_in_use_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_taskdesk(
            ["--headless", "--db", str(tmp_path / "tasks.db"), "--port", str(port)]
        )
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if f"port {port}" in ln and "in use" in ln]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr


# -- 4. start-up errors ----------------------------------------------------------------------


def test_not_a_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    content = b"".join(f"line {i}: this is a text file, not a database\n".encode()
                       for i in range(200))
    db.write_bytes(content)
    result = run_taskdesk(["--headless", "--db", str(db), "--port", "0"])
    assert result.returncode != 0
    assert f"database {db}" in result.stderr
    assert "not a database" in result.stderr
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == content
    # No -wal or -shm: SQLite never wrote to it (the instance lock lives in its own file).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db", "notes.db.lock"]


def make_newer_database(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    conn.commit()
    conn.close()


def test_database_from_a_newer_taskdesk_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    make_newer_database(db)
    result = run_taskdesk(["--headless", "--db", str(db), "--port", "0"])
    assert result.returncode != 0
    assert f"database {db}" in result.stderr
    assert f"schema version {LATEST_VERSION + 5}" in result.stderr
    assert "newer Taskdesk" in result.stderr
    assert "Traceback" not in result.stderr
    assert "API listening" not in result.stderr


def test_database_from_a_newer_taskdesk_is_left_untouched(tmp_path: Path) -> None:
    # Refusing a file means not writing to it: the newer Taskdesk that owns it must find it
    # exactly as it left it (journal mode included).
    db = tmp_path / "tasks.db"
    make_newer_database(db)
    before = db.read_bytes()
    result = run_taskdesk(["--headless", "--db", str(db), "--port", "0"])
    assert result.returncode != 0
    assert db.read_bytes() == before, "the refused database was modified"


@pytest.mark.parametrize("where", ["under_a_file", "proc", "a_folder"])
def test_database_in_an_unusable_place_is_refused_naming_the_path(
    tmp_path: Path, where: str
) -> None:
    if where == "proc":
        db = Path("/proc/taskdesk/x.db")
    elif where == "a_folder":
        db = tmp_path / "folder.db"
        db.mkdir()
    else:
        (tmp_path / "afile").write_text("a regular file, not a folder\n")
        db = tmp_path / "afile" / "x.db"
    result = run_taskdesk(["--headless", "--db", str(db), "--port", "0"])
    assert result.returncode != 0
    assert f"database {db}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "API listening" not in result.stderr


# -- 5. options ------------------------------------------------------------------------------


def test_help_lists_every_option_and_the_environment_variables() -> None:
    result = run_taskdesk(["--help"])
    assert result.returncode == 0, result.stderr
    for option in ("--db", "--host", "--port", "--workers", "--prefetch", "--work-delay",
                   "--max-attempts", "--retry-backoff", "--token", "--synchronous",
                   "--log-level", "--headless"):
        assert option in result.stdout, option
    assert "TASKDESK_" in result.stdout


def test_exposed_host_without_token_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    result = run_taskdesk(["--headless", "--host", "0.0.0.0", "--db", str(db), "--port", "0"])
    assert result.returncode != 0
    assert "--token" in result.stderr
    assert "API listening" not in result.stderr
    assert not db.exists()


def test_options_from_environment_variables(
    tmp_path: Path, start_taskdesk: StartTaskdesk
) -> None:
    db = tmp_path / "env.db"
    env = {
        "TASKDESK_TOKEN": "abc",
        "TASKDESK_PORT": "0",
        "TASKDESK_DB": str(db),
        "TASKDESK_PREFETCH": "7",
        "TASKDESK_WORK_DELAY": "0",
        "TASKDESK_WORKERS": "9",  # the command line wins
    }
    proc = start_taskdesk("--headless", "--workers", "3", env=env)
    proc.wait_listening()
    assert f"database {db}" in proc.log
    proc.wait_for_log(re.escape("3 workers started (prefetch 7, work delay 0.000s)"))
    assert db.exists()

    anonymous = proc.api()
    assert anonymous.get("/stats").status == 401
    assert anonymous.get("/tasks").status == 401
    wrong = proc.api(token="abd")
    assert wrong.get("/stats").status == 401
    assert wrong.post("/tasks", {"action": "uppercase", "data": {"text": "x"}}).status == 401

    authorised = proc.api(token="abc")
    assert authorised.get("/stats").status == 200
    reply = authorised.post("/tasks", {"action": "uppercase", "data": {"text": "x"}})
    assert reply.status == 202
    assert authorised.get(f"/tasks/{reply.body['id']}").status == 200
    stop_gracefully(proc)
    assert len(read_rows(db)) == 1


def test_tutorial_database_is_migrated_and_its_pending_task_run(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any
) -> None:
    db = tmp_path / "tutorial.db"
    pending = {"id": "tutorial-pending", "action": "uppercase", "data": {"text": "old"},
               "created_at": 1_700_000_100}
    done = {"id": "tutorial-done", "action": "uppercase", "data": {"text": "done"},
            "created_at": 1_700_000_000}
    conn = sqlite3.connect(db)
    conn.execute(TUTORIAL_SCHEMA)
    conn.execute(
        "INSERT INTO tasks (id, payload, status, result, created_at, processed_at) "
        "VALUES (?, ?, 'pending', NULL, ?, NULL)",
        (pending["id"], json.dumps(pending), pending["created_at"]),
    )
    conn.execute(
        "INSERT INTO tasks (id, payload, status, result, created_at, processed_at) "
        "VALUES (?, ?, 'completed', 'DONE', ?, ?)",
        (done["id"], json.dumps(done), done["created_at"], 1_700_000_005),
    )
    conn.commit()
    conn.close()

    # Retention off: the tutorial's completed task finished in 2023, long past the default 30
    # days, and this test is about what migration keeps.
    proc = start_taskdesk(*headless(db, "--work-delay", "0", "--keep-completed", "0"))
    proc.wait_listening()
    assert f"database migrated from schema version 0 to {LATEST_VERSION}" in proc.log
    api = proc.api()
    qtbot.waitUntil(lambda: completed(api) == 2, timeout=WAIT_MS)

    reply = api.get("/tasks")
    assert reply.status == 200
    assert reply.body["total"] == 2
    tasks = {t["id"]: t for t in reply.body["tasks"]}
    assert [t["id"] for t in reply.body["tasks"]] == [pending["id"], done["id"]]  # newest first

    ran = tasks[pending["id"]]
    assert ran["status"] == "completed"
    assert ran["action"] == "uppercase"
    assert ran["data"] == {"text": "old"}
    assert ran["result"] == {"output": "OLD"}
    assert ran["attempts"] == 1
    assert ran["created_at"] == pending["created_at"]

    kept = tasks[done["id"]]
    assert kept["status"] == "completed"
    assert kept["data"] == {"text": "done"}
    assert kept["result"] == "DONE"
    assert kept["processed_at"] == 1_700_000_005
    assert kept["error"] is None
    stop_gracefully(proc)

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        conn.close()
