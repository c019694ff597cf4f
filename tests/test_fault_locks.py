"""Faults injected into a real Taskdesk process (``main.py --headless`` on port 0).

1. Another program holds the database's write lock (``BEGIN IMMEDIATE`` or ``BEGIN EXCLUSIVE``
   in a separate python process). Held briefly, writes wait for it and succeed while reads go
   on (WAL). Held past the busy timeout, writes are refused with a JSON 503 naming the cause,
   /health says so, and Taskdesk resumes by itself once the lock is released: nothing is lost,
   nothing runs twice, no restart.
2. The database file is damaged while Taskdesk runs (table pages overwritten with garbage, or
   the file cut in half). Requests get JSON errors naming the damage, /health says what is
   wrong, SIGTERM still stops it, the file is left exactly as damaged (never "repaired" or
   replaced), and the next start refuses it, naming the file.

Every wait is a condition wait with a deadline (TIMEOUT); the only deliberate passing of time
is the length of a fault itself (how long the other program holds its lock).
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.workers.watchdog import WATCH_SECONDS
from storage import TaskStatus
from storage.sqlite.connection import BUSY_TIMEOUT_MS
from tests.proc_helpers import (
    TIMEOUT,
    Api,
    StartTaskdesk,
    TaskdeskProcess,
    completed,
    headless,
    read_only,
    read_rows,
    run_taskdesk,
)

WAIT_MS = int(TIMEOUT * 1000)
BUSY_TIMEOUT = BUSY_TIMEOUT_MS / 1000
# A "short" lock: held this long once the writes were sent, well under the busy timeout.
SHORT_HOLD = BUSY_TIMEOUT / 5









def health(api: Api) -> dict[str, Any]:
    reply = api.get("/health")
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.body
    return body


def submit(api: Api, texts: list[str]) -> dict[str, str]:
    """Submit an ``uppercase`` task per text; return {task id: text}."""
    accepted: dict[str, str] = {}
    for text in texts:
        reply = api.post("/tasks", {"action": "uppercase", "data": {"text": text}})
        assert reply.status == 202, reply
        accepted[reply.body["id"]] = text
    return accepted






def assert_all_done_once(rows: dict[str, dict[str, Any]], accepted: dict[str, str]) -> None:
    """Exactly the accepted tasks, each completed with its own result, on its one attempt."""
    assert set(rows) == set(accepted)
    for task_id, text in accepted.items():
        row = rows[task_id]
        assert row["status"] == "completed", row
        assert json.loads(row["result"]) == {"output": text.upper()}, row
        assert row["error"] is None, row
        assert row["attempts"] == 1, row


def records_with_traceback(log: str) -> list[str]:
    """The log records (level, logger, message; no time) that carry a Python traceback."""
    found: list[str] = []
    record = ""
    for line in log.splitlines():
        m = re.match(r"\d{4}-\d\d-\d\d [\d:,]+ (.*)", line)
        if m is not None:
            record = m[1]
        elif line.startswith("Traceback (most recent call last)") and record not in found:
            found.append(record)
    return found


def ids_in_log(log: str, message: str) -> list[str]:
    """Task ids of every log line '<message> id=<id> ...', in order, repeats included."""
    return re.findall(re.escape(message) + r" id=([0-9a-f-]+)", log)


def stop(proc: TaskdeskProcess) -> int:
    """SIGTERM, and the exit code; a stop that hangs fails the test."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"SIGTERM did not stop Taskdesk within 30 s; log:\n{proc.log}")


# -- HTTP with the details these tests look at -----------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]  # names in lower case
    sent: float  # time.monotonic()
    answered: float

    @property
    def waited(self) -> float:
        return self.answered - self.sent


def request(port: int, method: str, path: str, body: Any = None) -> Answer:
    """One request on its own connection; a dropped connection or a non-JSON body fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/json"} if method == "POST" else {}
    data = None if body is None else json.dumps(body).encode()
    sent = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    answered = time.monotonic()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    assert hdrs.get("content-type", "").startswith("application/json"), (resp.status, raw)
    return Answer(resp.status, json.loads(raw), hdrs, sent, answered)


def post_task(port: int, text: str) -> Answer:
    return request(port, "POST", "/tasks", {"action": "uppercase", "data": {"text": text}})


# -- another program holding the lock --------------------------------------------------------------

HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN " + sys.argv[2])
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
print("released", flush=True)
"""


class LockHolder:
    """A separate python process that takes the database's write lock and holds it until
    told to let go (a line on its stdin)."""

    def __init__(self, db: Path, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._expect("locked")
        self.locked_at = time.monotonic()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("<eof>")

    def _expect(self, word: str) -> None:
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"the lock holder did not say {word!r} within {TIMEOUT} s")
        assert line == word, f"lock holder said {line!r}, expected {word!r}"

    def release(self) -> float:
        """Let go of the lock; returns the time just before asking (nothing Taskdesk writes
        can commit before it)."""
        asked = time.monotonic()
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self._expect("released")
        assert self.proc.wait(timeout=TIMEOUT) == 0
        return asked

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Path, str], LockHolder]]:
    holders: list[LockHolder] = []

    def hold(db: Path, mode: str) -> LockHolder:
        holder = LockHolder(db, mode)
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.kill()


@pytest.fixture
def in_background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield pool


def start_busy_taskdesk(
    start_taskdesk: StartTaskdesk, db: Path, qtbot: Any, n: int = 40
) -> tuple[TaskdeskProcess, Api, dict[str, str]]:
    """Taskdesk with *n* tasks of at least 0.2 s each, two workers, and work left to do."""
    proc = start_taskdesk(*headless(db, "--work-delay", "0.2"))
    proc.wait_listening()
    api = proc.api()
    accepted = submit(api, [f"before {i}" for i in range(n)])
    qtbot.waitUntil(lambda: completed(api) >= 1, timeout=WAIT_MS)
    return proc, api, accepted


# -- 1a. lock held for a short while ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
def test_lock_held_briefly_by_another_program_delays_writes_and_loses_nothing(
    tmp_path: Path, start_taskdesk: StartTaskdesk, hold_lock: Callable[[Path, str], LockHolder],
    in_background: ThreadPoolExecutor, qtbot: Any, mode: str,
) -> None:
    db = tmp_path / "tasks.db"
    proc, api, accepted = start_busy_taskdesk(start_taskdesk, db, qtbot)

    holder = hold_lock(db, mode)
    at_lock = api.counts()  # a read, answered while another program holds the write lock
    assert at_lock["queued"] > 0, "the lock must come while work is left"

    posts: list[Future[Answer]] = [
        in_background.submit(post_task, api.port, f"during {i}") for i in range(3)
    ]
    # While the POSTs wait for the lock, reads keep answering (WAL), without the new tasks.
    for _ in range(3):
        listing = api.get("/tasks?limit=1000")
        assert listing.status == 200, listing
        assert listing.body["total"] == len(accepted)
        assert api.get(f"/tasks/{next(iter(accepted))}").status == 200
    assert not any(p.done() for p in posts), [p.result() for p in posts if p.done()]
    assert api.counts() == at_lock, "something was written while the lock was held"

    # The fault: the lock stays held a while, well under the busy timeout.
    held_until = time.monotonic() + SHORT_HOLD
    qtbot.waitUntil(lambda: time.monotonic() >= held_until, timeout=WAIT_MS)
    assert not any(p.done() for p in posts), [p.result() for p in posts if p.done()]
    released = holder.release()

    answers = [p.result(timeout=TIMEOUT) for p in posts]
    for i, answer in enumerate(answers):
        assert answer.status == 202, answer
        assert answer.body["status"] == "queued", answer
        assert answer.answered > released, "a write was answered before the lock was released"
        accepted[answer.body["id"]] = f"during {i}"

    qtbot.waitUntil(lambda: completed(api) == len(accepted), timeout=WAIT_MS)
    state = health(api)
    assert (state["status"], state["problems"]) == ("ok", []), state
    assert stop(proc) == 0, proc.log
    assert "database is locked" not in proc.log
    assert "Traceback" not in proc.log

    rows = read_rows(db, only_read=True)
    assert_all_done_once(rows, accepted)
    completions = ids_in_log(proc.log, "task completed")
    assert sorted(completions) == sorted(accepted), "a task was completed twice, or never"


# -- 1b. lock held past the busy timeout -----------------------------------------------------------


def test_lock_held_past_the_busy_timeout_gives_503_and_work_resumes_without_restart(
    tmp_path: Path, start_taskdesk: StartTaskdesk, hold_lock: Callable[[Path, str], LockHolder],
    qtbot: Any,
) -> None:
    db = tmp_path / "tasks.db"
    proc, api, accepted = start_busy_taskdesk(start_taskdesk, db, qtbot)

    holder = hold_lock(db, "EXCLUSIVE")
    at_lock = api.get("/tasks?limit=1000")  # reads answer throughout (WAL)
    assert at_lock.status == 200, at_lock
    running_at_lock = {t["id"] for t in at_lock.body["tasks"] if t["status"] == "running"}
    queued_at_lock = [t["id"] for t in at_lock.body["tasks"] if t["status"] == "queued"]
    assert queued_at_lock, "the lock must come while work is left"

    # A new task: refused after waiting the busy timeout, with a JSON 503 naming the cause.
    refused = post_task(api.port, "refused while locked")
    assert refused.status == 503, refused
    error = refused.body["error"]
    assert "database is locked" in error and str(db) in error, error
    assert refused.headers.get("retry-after"), refused.headers
    assert "id" not in refused.body
    assert refused.waited >= BUSY_TIMEOUT * 0.99, f"gave up after {refused.waited:.2f} s"
    # A change to an existing task: refused the same way, and not made.
    victim = queued_at_lock[-1]
    cancel = request(api.port, "POST", f"/tasks/{victim}/cancel")
    assert cancel.status == 503, cancel
    assert "database is locked" in cancel.body["error"], cancel

    listing = api.get("/tasks?limit=1000")
    assert listing.status == 200, listing
    assert listing.body["total"] == len(accepted), "a refused task was stored"
    assert api.get(f"/tasks/{victim}").body["status"] == "queued"
    state = health(api)
    assert state["status"] == "degraded", state
    assert any("database is locked" in p and str(db) in p for p in state["problems"]), state

    # The fault goes on until the workers have failed to store what they did, and then failed
    # to hand those tasks back to the queue: /health lists that problem too.
    qtbot.waitUntil(lambda: len(health(api)["problems"]) >= 2, timeout=WAIT_MS)
    holder.release()

    # No restart: new work is accepted again, and everything queued before runs, once.
    accepted.update(submit(api, [f"after {i}" for i in range(5)]))
    qtbot.waitUntil(lambda: completed(api) == len(accepted), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: health(api)["status"] == "ok", timeout=WAIT_MS)
    assert health(api)["problems"] == []
    assert api.counts()[TaskStatus.CANCELLED] == 0

    assert stop(proc) == 0, proc.log
    rows = read_rows(db, only_read=True)
    assert_all_done_once(rows, accepted)  # the refused POST left nothing behind
    completions = ids_in_log(proc.log, "task completed")
    assert sorted(completions) == sorted(accepted), "a task was completed twice, or never"
    # Only a task running when the lock came can have run twice: its outcome could not be
    # stored, so it went back to the queue (its attempt given back) and ran again.
    started = ids_in_log(proc.log, "processing task")
    ran_twice = {i for i in started if started.count(i) > 1}
    assert ran_twice <= running_at_lock, ran_twice
    assert all(started.count(i) <= 2 for i in started)


# -- 1c. a long lock: each write's bound, and the log ---------------------------------------------


def test_a_write_arriving_while_another_waits_for_the_lock_is_refused_within_the_bound(
    tmp_path: Path, start_taskdesk: StartTaskdesk, hold_lock: Callable[[Path, str], LockHolder],
    in_background: ThreadPoolExecutor, qtbot: Any,
) -> None:
    db = tmp_path / "tasks.db"
    proc = start_taskdesk(*headless(db, "--work-delay", "0"))  # idle: no worker writes
    port = proc.wait_listening()
    hold_lock(db, "IMMEDIATE")
    first = in_background.submit(post_task, port, "first")
    # The fault's shape, not a synchronisation: the second write arrives halfway through the
    # first one's wait for the lock.
    halfway = time.monotonic() + BUSY_TIMEOUT / 2
    qtbot.waitUntil(lambda: time.monotonic() >= halfway, timeout=WAIT_MS)
    second = post_task(port, "second")
    earlier = first.result(timeout=TIMEOUT)
    assert (earlier.status, second.status) == (503, 503), (earlier, second)
    # Each write waits for the lock up to the busy timeout, like the first one did; not for
    # the first one's wait and then a whole busy timeout of its own.
    assert second.waited <= earlier.waited * 1.25, (
        f"the first write was refused after {earlier.waited:.1f} s, the second after "
        f"{second.waited:.1f} s")


def test_lock_outlasting_a_hand_back_is_logged_without_tracebacks(
    tmp_path: Path, start_taskdesk: StartTaskdesk, hold_lock: Callable[[Path, str], LockHolder],
    qtbot: Any,
) -> None:
    db = tmp_path / "tasks.db"
    proc, api, accepted = start_busy_taskdesk(start_taskdesk, db, qtbot)
    holder = hold_lock(db, "EXCLUSIVE")
    # Held until a task's outcome could not be stored nor the task handed back (/health lists
    # both problems), then long enough for the watchdog to retry the hand-back at least once
    # (it looks every WATCH_SECONDS; a write waits up to the busy timeout).
    qtbot.waitUntil(lambda: len(health(api)["problems"]) >= 2, timeout=WAIT_MS)
    held_until = time.monotonic() + WATCH_SECONDS + BUSY_TIMEOUT + 1
    qtbot.waitUntil(lambda: time.monotonic() >= held_until, timeout=WAIT_MS)
    holder.release()
    qtbot.waitUntil(lambda: completed(api) == len(accepted), timeout=WAIT_MS)
    assert stop(proc) == 0, proc.log
    assert "Traceback" not in proc.log, proc.log


# -- 2. database damaged while running -------------------------------------------------------------

PAGE_SIZE = 4096  # SQLite's default, which Taskdesk keeps
GARBAGE = bytes([0xDE, 0xAD, 0xBE, 0xEF]) * (PAGE_SIZE // 4)
ROWS = 300
PADDING = "x" * 1000  # rows of about 2 KB (data and result): a few per page, no overflow


def marker(i: int) -> str:
    return f"row-{i:04d}|"


def page_of(content: bytes, text: str) -> int:
    """The 0-based page of the database file holding *text* (found once, in a table row)."""
    offset = content.find(text.encode())
    assert offset >= 0 and content.find(text.encode(), offset + 1) < 0, text
    return offset // PAGE_SIZE


def damage(db: Path, how: str, rows: dict[int, str]) -> tuple[str, dict[int, bytes], int]:
    """Damage the database file under a running Taskdesk; return the id of a task whose row is
    in the damaged part, what was written where (page index → bytes) and the new size."""
    content = db.read_bytes()
    size = len(content)
    assert size % PAGE_SIZE == 0
    if how == "overwrite":
        # The pages holding a run of rows in the middle of the tasks table; never page 0 (the
        # header and schema) and never an index page (they hold no task data).
        pages = sorted({page_of(content, marker(i)) for i in range(ROWS // 3, 2 * ROWS // 3)})
        assert pages[0] > 0
        with open(db, "r+b") as f:
            for page in pages:
                f.seek(page * PAGE_SIZE)
                f.write(GARBAGE)
            f.flush()
        return rows[ROWS // 2], dict.fromkeys(pages, GARBAGE), size
    assert how == "truncate"
    keep = size // PAGE_SIZE // 2 * PAGE_SIZE
    with open(db, "r+b") as f:
        f.truncate(keep)
    assert page_of(content, marker(ROWS - 1)) * PAGE_SIZE >= keep  # the newest rows are gone
    return rows[ROWS - 1], {}, keep


@pytest.mark.parametrize("how", ["overwrite", "truncate"])
def test_database_damaged_while_running_gives_json_errors_and_is_refused_at_next_start(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any, how: str,
) -> None:
    db = tmp_path / "tasks.db"
    first = start_taskdesk(*headless(db, "--work-delay", "0"))
    first.wait_listening()
    api = first.api()
    texts = {i: marker(i) + PADDING for i in range(ROWS)}
    ids = {int(text[4:8]): task_id for task_id, text in submit(api, list(texts.values())).items()}
    qtbot.waitUntil(lambda: completed(api) == ROWS, timeout=WAIT_MS)
    assert stop(first) == 0, first.log
    assert not db.with_name(db.name + "-wal").exists()  # every row is in the file itself

    proc = start_taskdesk(*headless(db, "--work-delay", "0"))
    port = proc.wait_listening()
    api = proc.api()
    assert health(api)["status"] == "ok"

    damaged_id, written, size = damage(db, how, ids)

    def reports_damage(answer: Answer) -> bool:
        error = answer.body["error"] if answer.status == 500 else ""
        return f"database {db} is damaged: database disk image is malformed" in error

    # Reads and writes that touch the damaged part: a JSON error naming the file and damage.
    for answer in (request(port, "GET", f"/tasks/{damaged_id}"),
                   request(port, "GET", "/tasks?limit=1000"),
                   request(port, "POST", f"/tasks/{damaged_id}/cancel")):
        assert reports_damage(answer), answer
    intact = request(port, "GET", f"/tasks/{ids[0]}")
    stats = request(port, "GET", "/stats")
    new = post_task(port, "after the damage")
    if how == "overwrite":
        # The rest of the file is whole: reads that do not touch the damage keep working,
        # but nothing more is written into a file known to be damaged (that can spread it).
        assert intact.status == 200 and intact.body["status"] == "completed", intact
        assert stats.status == 200 and stats.body["counts"]["completed"] == ROWS, stats
        assert reports_damage(new), new
    else:
        # SQLite will not open the shortened file any more: a request on a server thread
        # that had no connection yet fails even for rows still there, one on a thread that
        # had can read them. The end of the table is gone: nothing can be added.
        for answer in (intact, stats):
            assert answer.status == 200 or reports_damage(answer), answer
        assert reports_damage(new), new

    state = health(api)
    assert state["status"] == "degraded", state
    assert any(f"database {db} is damaged" in p for p in state["problems"]), state

    # SIGTERM still stops it, in bounded time; the exit code says the run ended badly.
    assert stop(proc) == 1, proc.log
    assert f"database {db} was found damaged and left as it is" in proc.log
    assert not records_with_traceback(proc.log), proc.log

    # Nothing repaired, nothing replaced: the damage is still there, byte for byte.
    after_stop = db.read_bytes()
    for page, content in written.items():
        assert after_stop[page * PAGE_SIZE:(page + 1) * PAGE_SIZE] == content, page
    if how == "truncate":
        assert len(after_stop) == size, "the shortened file was written to"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["tasks.db", "tasks.db.damaged", "tasks.db.lock"], files

    # The next start refuses the file, naming it, and leaves it exactly as it is.
    again = run_taskdesk(list(headless(db, "--work-delay", "0")))
    assert again.returncode != 0, again.stderr
    assert f"database {db} is damaged" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr, again.stderr
    assert "API listening" not in again.stderr
    assert db.read_bytes() == after_stop
    assert sorted(p.name for p in tmp_path.iterdir()) == files

    # What the damage did not touch is still there to be salvaged.
    assert page_of(after_stop, marker(0)) < size // PAGE_SIZE
    if how == "overwrite":  # SQLite still reads it (the shortened file it will not open)
        conn = read_only(db)
        try:
            row = conn.execute("SELECT status, result FROM tasks WHERE id = ?",
                               (ids[0],)).fetchone()
        finally:
            conn.close()
        assert row[0] == "completed" and json.loads(row[1]) == {"output": texts[0].upper()}


def test_database_restored_after_damage_is_checked_and_used_again(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any,
) -> None:
    # The file a damaged run leaves beside the database only asks for a check at the next
    # start: once the file is whole again (restored from a backup, say), it is used as before.
    db = tmp_path / "tasks.db"
    first = start_taskdesk(*headless(db, "--work-delay", "0"))
    first.wait_listening()
    accepted = submit(first.api(), ["kept"])
    qtbot.waitUntil(lambda: completed(first.api()) == 1, timeout=WAIT_MS)
    assert stop(first) == 0, first.log
    marker_file = db.with_name(db.name + ".damaged")
    marker_file.write_text(f"database {db} is damaged: database disk image is malformed\n")

    again = start_taskdesk(*headless(db, "--work-delay", "0"))
    again.wait_listening()
    assert f"database {db} was found damaged before; it passed an integrity check" in again.log
    assert not marker_file.exists()
    assert health(again.api())["status"] == "ok"
    assert stop(again) == 0, again.log
    assert_all_done_once(read_rows(db, only_read=True), accepted)
