"""``taskdesk`` subcommands against real Taskdesk processes: output, exit codes, waiting.

Two servers serve the module: ``plain`` has the built-in actions only (no token), ``own`` has
command actions from an actions file, so its API wants the token kept beside its database.
The command line runs as ``python main.py …``, a child process as the ``taskdesk`` command
would be, except where a test needs to look inside it. A few protocol cases the real server
cannot be made to show on demand (no /events, a resync on reconnection) run against a small
fake server.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage import STATUSES
from tests.launcher import MAIN, REPO_ROOT, child_env
from tests.proc_helpers import TaskdeskProcess, headless
from tests.sse_client import SseStream

TIMEOUT = 60.0
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# An action that prints "first", waits until the file {gate} exists, prints "second" and exits
# with {code}: a task that runs for exactly as long as a test wants.
ACTIONS = r'''
[actions.gated]
description = "Wait for a file"
argv = ["sh", "-c", "echo first; while [ ! -e \"$0\" ]; do sleep 0.02; done; echo second; exit $1",
        "{gate}", "{code}"]
[actions.gated.schema]
type = "object"
required = ["gate", "code"]
properties.gate = { type = "string" }
properties.code = { type = "integer" }

[actions.say]
description = "Print a text"
argv = ["printf", "%s", "{text}"]
[actions.say.schema]
type = "object"
required = ["text"]
properties.text = { type = "string" }

[schedules.yearly]
action = "say"
data = { text = "happy new year" }
cron = "0 3 1 1 *"

[actions.typed]
description = "Take data of every type"
argv = ["true"]
[actions.typed.schema]
type = "object"
properties.n = { type = "integer" }
properties.x = { type = "number" }
properties.flag = { type = "boolean" }
properties.tags = { type = "array", items = { type = "string" } }
properties.ns = { type = "array", items = { type = "integer" } }
properties.name = { type = "string" }
properties.either = { type = ["integer", "string"] }
properties.opts = { type = "object" }
'''


# -- servers and running the command line ------------------------------------------------------


class Server:
    def __init__(self, proc: TaskdeskProcess, db: Path, token: str | None) -> None:
        self.proc = proc
        self.db = db
        self.token = token
        self.url = proc.base_url
        self.api = proc.api(token)

    def args(self) -> list[str]:
        """What points a subcommand at this server: its URL, and its database (whose token
        file the command line reads)."""
        return ["--db", str(self.db)]

    def env(self) -> dict[str, str]:
        return {"TASKDESK_URL": self.url}


def _start(folder: Path, *extra: str) -> tuple[TaskdeskProcess, Path]:
    db = folder / "tasks.db"
    proc = TaskdeskProcess(headless(db, "--work-delay", "0", "--max-attempts", "1",
                                    "--no-plugins", *extra))
    try:
        proc.wait_listening()
    except BaseException:
        proc.kill()
        raise
    return proc, db


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    proc, db = _start(tmp_path_factory.mktemp("plain"))
    yield Server(proc, db, None)
    proc.kill()


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("own")
    actions = folder / "actions.toml"
    actions.write_text(ACTIONS, encoding="utf-8")
    proc, db = _start(folder, "--actions", str(actions), "--kill-grace", "1")
    token = (db.parent / "tasks.db.token").read_text(encoding="utf-8").strip()
    yield Server(proc, db, token)
    proc.kill()


def taskdesk(*args: str, env: dict[str, str] | None = None,
             timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``taskdesk ARGS`` to its end; no TASKDESK_ variable but those in *env*."""
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=REPO_ROOT,
                          env=child_env(env), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)


def on(server: Server, *args: str, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    """A subcommand against *server*: ``taskdesk --db DB COMMAND …`` with TASKDESK_URL."""
    return taskdesk(*server.args(), *args, env={**server.env(), **(env or {})})


def background(server: Server, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(MAIN), *server.args(), *args], cwd=REPO_ROOT,
                            env=child_env(server.env()), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing subcommand writes on stderr."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("taskdesk: "), lines
    return lines[0]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def status_of(server: Server, task_id: str) -> str:
    reply = server.api.get(f"/tasks/{task_id}")
    assert reply.status == 200, reply
    return str(reply.body["status"])


def submit(server: Server, action: str, data: dict[str, Any], **fields: Any) -> str:
    reply = server.api.post("/tasks", {"action": action, "data": data, **fields})
    assert reply.status == 202, reply
    return str(reply.body["id"])


def gated(server: Server, tmp_path: Path, code: int = 0) -> tuple[str, Path]:
    """A running `gated` task and its gate (create the file to let it end)."""
    gate = tmp_path / f"gate-{time.monotonic_ns()}"
    task_id = submit(server, "gated", {"gate": str(gate), "code": code})
    wait_until(lambda: status_of(server, task_id) == "running", "the task runs")
    return task_id, gate


def finished(server: Server, task_id: str) -> dict[str, Any]:
    wait_until(lambda: status_of(server, task_id) in ("completed", "failed", "cancelled"),
               "the task ends")
    body: dict[str, Any] = server.api.get(f"/tasks/{task_id}").body
    return body


# -- submit ------------------------------------------------------------------------------------


def test_submit_prints_the_id_of_a_task_that_runs(plain: Server) -> None:
    done = on(plain, "submit", "uppercase", "text=hello world")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    assert ID.fullmatch(task_id), done.stdout
    task = finished(plain, task_id)
    assert (task["action"], task["data"], task["result"]) == (
        "uppercase", {"text": "hello world"}, {"output": "HELLO WORLD"})


def test_submit_types_key_value_by_the_actions_schema(own: Server) -> None:
    done = on(own, "submit", "typed", "n=3", "x=2.5", "flag=yes", "tags=a,b", "ns=1,2",
              "name=007", "either=12", "opts:={\"a\": [1]}", "extra=5", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "queued"
    data = own.api.get(f"/tasks/{answer['id']}").body["data"]
    assert data == {"n": 3, "x": 2.5, "flag": True, "tags": ["a", "b"], "ns": [1, 2],
                    "name": "007", "either": 12, "opts": {"a": [1]}, "extra": "5"}
    # Strings stay strings, an empty list is [], the first type that takes the text wins.
    done = on(own, "submit", "typed", "x=2", "tags=", "either=twelve", "flag=false", "--json")
    data = own.api.get(f"/tasks/{json.loads(done.stdout)['id']}").body["data"]
    assert data == {"x": 2, "tags": [], "either": "twelve", "flag": False}


def test_the_sum_of_numbers_given_as_key_value(plain: Server) -> None:
    done = on(plain, "submit", "sum", "numbers=1,2.5,-3", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert (task["data"], task["status"], task["result"]) == (
        {"numbers": [1, 2.5, -3]}, "completed", {"output": 0.5})


@pytest.mark.parametrize(("words", "message"), [
    (["n=three"], "taskdesk: 'n=three': the action's schema wants an integer"),
    (["ns=1,x"], "taskdesk: 'ns=1,x': the action's schema wants a comma-separated list of "
                 "items each an integer"),
    (["flag=maybe"], "taskdesk: 'flag=maybe': the action's schema wants true or false"),
    (["oops"], "taskdesk: 'oops' is not key=value (or key:=JSON)"),
    (["opts:={"], "taskdesk: 'opts:={': the value after := is not JSON (Expecting property "
                  "name enclosed in double quotes: line 1 column 2 (char 1))"),
    (["n=1", "--data", "{}"], "taskdesk: give the data as KEY=VALUE words or as --data JSON, "
                              "not both"),
    (["--data", "[1]"], "taskdesk: --data must be a JSON object"),
], ids=["integer", "list-item", "boolean", "no-equals", "bad-json", "both", "not-object"])
def test_data_that_cannot_be_made_is_a_usage_error(own: Server, words: list[str],
                                                   message: str) -> None:
    before = own.api.get("/stats").body["counts"]
    done = on(own, "submit", "typed", *words)
    assert done.returncode == 2
    assert one_error(done) == message
    assert done.stdout == ""
    assert own.api.get("/stats").body["counts"] == before  # nothing was submitted


def test_submit_with_data_json_and_the_scheduling_options(plain: Server) -> None:
    first = submit(plain, "uppercase", {"text": "first"})
    done = on(plain, "submit", "uppercase", "--data", '{"text": "é"}', "--priority", "7",
              "--delay", "2h", "--after", first, "--key", "k-123", "--json")
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["id"]
    task = plain.api.get(f"/tasks/{task_id}").body
    assert (task["data"], task["priority"], task["after"]) == ({"text": "é"}, 7, [first])
    assert 7190 < task["run_after"] - task["created_at"] < 7210
    again = on(plain, "submit", "uppercase", "--data", '{"text": "é"}', "--priority", "7",
               "--delay", "2h", "--after", first, "--key", "k-123")
    assert again.stdout.strip() == task_id  # the same key gives the same task
    at = on(plain, "submit", "uppercase", "text=later", "--run-at", "2100-01-01T00:00:00Z")
    assert at.returncode == 1  # more than a year ahead: the API refuses it
    assert "run_at is more than a year ahead" in one_error(at)
    plain.api.post(f"/tasks/{task_id}/cancel", {})


def test_submit_wait_exits_0_when_it_completed_and_1_when_it_failed(own: Server,
                                                                    tmp_path: Path) -> None:
    gate = tmp_path / "open"
    gate.touch()
    done = on(own, "submit", "gated", f"gate={gate}", "code=0", "--wait")
    assert done.returncode == 0, done.stderr
    task_id, line = done.stdout.splitlines()
    assert line.startswith(f"{task_id}  completed")
    failed = on(own, "submit", "gated", f"gate={gate}", "code=3", "--wait")
    assert failed.returncode == 1
    task_id = failed.stdout.splitlines()[0]
    assert one_error(failed).startswith(f"taskdesk: task {task_id} failed: CommandFailed: exit "
                                        "code 3")


# -- list, show, log, stats --------------------------------------------------------------------


def test_list_prints_a_table_and_json_as_the_api_gives_it(plain: Server) -> None:
    ids = [submit(plain, "tablecheck", {"n": i}) for i in range(3)]
    for task_id in ids:
        finished(plain, task_id)
    table = on(plain, "list", "--action", "tablecheck")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "ACTION", "CREATED", "TRIES", "OUTCOME"]
    assert [row.split()[0] for row in rows] == ids[::-1]  # newest first
    for row in rows:
        assert row.split()[1:3] == ["completed", "tablecheck"]
        assert row.index("completed") == header.index("STATUS")  # aligned
        assert row.endswith('{"output":"processed"}')
    assert "\x1b[" not in table.stdout  # not a terminal: no colour
    as_json = on(plain, "list", "--action", "tablecheck", "--limit", "2", "--json")
    assert json.loads(as_json.stdout) == plain.api.get(
        "/tasks?action=tablecheck&limit=2").body
    none = on(plain, "list", "--action", "nothing-like-it")
    assert (none.returncode, none.stdout) == (0, "no tasks like that\n")
    bad = on(plain, "list", "--status", "done")
    assert bad.returncode == 2
    assert one_error(bad).startswith(
        "taskdesk: invalid value for --status from the command line: 'done' is not one of")


def test_list_sorts_as_the_api_does(plain: Server) -> None:
    ids = [submit(plain, "sortcheck", {"n": i}) for i in range(3)]
    for task_id in ids:
        finished(plain, task_id)
    oldest_first = on(plain, "list", "--action", "sortcheck", "--sort", "created",
                      "--order", "asc")
    assert oldest_first.returncode == 0, oldest_first.stderr
    assert [row.split()[0] for row in oldest_first.stdout.splitlines()[1:]] == ids
    by_finish = on(plain, "list", "--action", "sortcheck", "--sort", "finished", "--json")
    assert json.loads(by_finish.stdout) == plain.api.get(
        "/tasks?action=sortcheck&sort=finished").body
    bad = on(plain, "list", "--sort", "size")
    assert bad.returncode == 2 and "--sort" in one_error(bad)


def test_the_command_line_offers_every_sort_of_the_api() -> None:
    from service.cli.commands import SORTS
    from storage import TaskSort

    assert set(SORTS) == {sort.value for sort in TaskSort}


def test_list_json_stays_one_document_with_many_rows(plain: Server) -> None:
    for i in range(300):
        submit(plain, "many", {"text": "x" * 50 + "\n\"quoted\" é " + str(i)})
    done = on(plain, "list", "--action", "many", "--limit", "1000", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["count"], len(body["tasks"])) == (300, 300)
    assert done.stdout.count("\n") == 1  # the API's JSON, not reflowed
    table = on(plain, "list", "--action", "many", "--limit", "1000")
    assert len(table.stdout.splitlines()) == 301  # one line per task, whatever its text


def test_a_reader_that_went_away_ends_the_command_quietly(plain: Server) -> None:
    # `taskdesk list | head -1`, head gone before the table is written: like a C tool, the
    # command ends by SIGPIPE, without a BrokenPipeError traceback.
    submit(plain, "pipe", {})
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = subprocess.run([sys.executable, str(MAIN), *plain.args(), "list"],
                              cwd=REPO_ROOT, env=child_env(plain.env()),
                              stdin=subprocess.DEVNULL, stdout=writer, stderr=subprocess.PIPE,
                              timeout=TIMEOUT, check=False)
    finally:
        os.close(writer)
    assert (proc.returncode, proc.stderr) == (-signal.SIGPIPE, b"")


def test_statuses_are_coloured_on_a_terminal_only_without_no_color(plain: Server) -> None:
    task_id = submit(plain, "colour", {})
    finished(plain, task_id)

    def on_a_terminal(extra: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, str(MAIN), *plain.args(), "list", "--action", "colour"],
            cwd=REPO_ROOT, env=child_env({**plain.env(), **extra}), stdin=subprocess.DEVNULL,
            stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        output = b""
        while True:
            ready, _, _ = select.select([leader], [], [], TIMEOUT)
            assert ready, "no output"
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        assert proc.wait(TIMEOUT) == 0
        return output.decode()

    coloured = on_a_terminal({})
    assert f"{task_id}  \x1b[32mcompleted\x1b[0m  " in coloured
    assert "\x1b[1mID" in coloured  # the header in bold
    assert "\x1b[" not in on_a_terminal({"NO_COLOR": "1"})


def test_show_prints_the_task_and_json_as_the_api_gives_it(own: Server, tmp_path: Path) -> None:
    gate = tmp_path / "open"
    gate.touch()
    task_id = submit(own, "gated", {"gate": str(gate), "code": 4})
    task = finished(own, task_id)
    shown = on(own, "show", task_id)
    assert shown.returncode == 0, shown.stderr
    fields: dict[str, str] = {}
    name = ""
    for line in shown.stdout.splitlines():
        if line[:1] == " ":  # a value's next line
            fields[name] += "\n" + line.strip()
        else:
            name, value = line.split(None, 1)
            fields[name] = value
    assert fields["id"] == task_id
    assert (fields["action"], fields["status"], fields["attempts"]) == (
        "gated", "failed", "1 of 1")
    assert fields["error"].startswith("CommandFailed: exit code 4")
    assert json.loads(fields["data"]) == {"gate": str(gate), "code": 4}
    as_json = on(own, "show", task_id, "--json")
    assert json.loads(as_json.stdout) == task
    missing = on(own, "show", "no-such-task")
    assert missing.returncode == 1
    assert one_error(missing) == "taskdesk: task no-such-task not found"


def test_log_prints_the_bytes_of_the_log(own: Server) -> None:
    text = "héllo ✓ 🙂\nno newline at the end"
    task_id = submit(own, "say", {"text": text})
    finished(own, task_id)
    done = subprocess.run([sys.executable, str(MAIN), *own.args(), "log", task_id],
                          cwd=REPO_ROOT, env=child_env(own.env()), capture_output=True,
                          timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == text.encode()


def test_log_follow_prints_a_running_commands_output_until_it_ends(own: Server,
                                                                   tmp_path: Path) -> None:
    task_id, gate = gated(own, tmp_path, code=0)
    follow = background(own, "log", "--follow", task_id)
    assert follow.stdout is not None
    # Printed while the command still runs: it cannot end before the gate opens.
    assert follow.stdout.readline() == "first\n"
    assert follow.poll() is None
    gate.touch()
    assert follow.stdout.readline() == "second\n"
    assert follow.wait(TIMEOUT) == 0
    assert follow.stdout.read() == ""
    follow.stdout.close()
    assert follow.stderr is not None and follow.stderr.read() == ""
    follow.stderr.close()


def test_log_follow_of_a_task_that_fails_exits_1(own: Server, tmp_path: Path) -> None:
    task_id, gate = gated(own, tmp_path, code=5)
    follow = background(own, "log", "-f", task_id)
    assert follow.stdout is not None and follow.stderr is not None
    assert follow.stdout.readline() == "first\n"
    gate.touch()
    assert follow.wait(TIMEOUT) == 1
    assert follow.stdout.read() == "second\n"
    error = follow.stderr.read()
    assert error.startswith(f"taskdesk: task {task_id} failed: CommandFailed: exit code 5")
    assert error.count("\n") == 1
    follow.stdout.close()
    follow.stderr.close()


def test_stats(plain: Server) -> None:
    done = on(plain, "stats")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    counts = plain.api.get("/stats").body["counts"]
    assert [line.split()[0] for line in lines[:5]] == list(counts)
    assert any(line.startswith("workers") and line.endswith("of 2 busy") for line in lines)
    as_json = json.loads(on(plain, "stats", "--json").stdout)
    assert set(as_json) >= {"counts", "queue_depth", "workers", "throughput"}


# -- wait, cancel, retry -----------------------------------------------------------------------


def test_wait_waits_for_a_running_task_to_complete(own: Server, tmp_path: Path) -> None:
    task_id, gate = gated(own, tmp_path)
    waiting = background(own, "wait", task_id)
    assert waiting.stdout is not None and waiting.stderr is not None
    # The task cannot end before the gate opens, so an early exit would show here.
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.wait(1.0)
    gate.touch()
    assert waiting.wait(TIMEOUT) == 0
    assert waiting.stdout.read().startswith(f"{task_id}  completed  ")
    assert waiting.stderr.read() == ""
    waiting.stdout.close()
    waiting.stderr.close()


def test_wait_exits_1_naming_the_tasks_that_failed_or_were_cancelled(
    own: Server, tmp_path: Path
) -> None:
    done_id = submit(own, "say", {"text": "ok"})
    failing_id, failing_gate = gated(own, tmp_path, code=2)
    cancelled_id, _ = gated(own, tmp_path)
    waiting = background(own, "wait", done_id, failing_id, cancelled_id)
    assert waiting.stdout is not None and waiting.stderr is not None
    failing_gate.touch()
    wait_until(lambda: status_of(own, failing_id) == "failed", "the task fails")
    assert own.api.post(f"/tasks/{cancelled_id}/cancel", {}).status == 202
    assert waiting.wait(TIMEOUT) == 1
    ended = {line.split()[0]: line.split()[1] for line in waiting.stdout.read().splitlines()}
    assert ended == {done_id: "completed", failing_id: "failed", cancelled_id: "cancelled"}
    assert waiting.stderr.read() == (
        f"taskdesk: 2 of 3 tasks did not complete: {failing_id} failed, {cancelled_id} "
        "cancelled\n")
    waiting.stdout.close()
    waiting.stderr.close()


def test_wait_on_tasks_that_already_ended(plain: Server) -> None:
    task_id = submit(plain, "uppercase", {"text": "done"})
    finished(plain, task_id)
    done = on(plain, "wait", task_id, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == plain.api.get(f"/tasks/{task_id}").body
    cancelled = submit(plain, "uppercase", {"text": "later"}, delay=3600)
    plain.api.post(f"/tasks/{cancelled}/cancel", {})
    again = on(plain, "wait", cancelled)
    assert again.returncode == 1
    assert one_error(again) == f"taskdesk: task {cancelled} cancelled"


def test_wait_for_an_unknown_task_fails_at_once(plain: Server) -> None:
    done = on(plain, "wait", "no-such-task")
    assert done.returncode == 1
    assert one_error(done) == "taskdesk: task no-such-task not found"


def test_wait_polls_when_every_event_stream_is_taken(own: Server, tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {own.token}"}
    streams: list[SseStream] = []
    try:
        while not streams or streams[-1].open:  # until one is refused: none is left
            assert len(streams) <= 16
            streams.append(SseStream(own.url, "/events", headers, timeout=TIMEOUT))
        assert streams[-1].status == 503
        task_id, gate = gated(own, tmp_path)
        waiting = background(own, "wait", task_id)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(1.0)
        gate.touch()
        assert waiting.wait(TIMEOUT) == 0
        out, err = waiting.communicate()
        assert out.startswith(f"{task_id}  completed") and err == ""
    finally:
        for stream in streams:
            stream.close()


def test_cancel_and_retry_each_task_and_say_which_failed(plain: Server) -> None:
    first = submit(plain, "uppercase", {"text": "a"}, delay=3600)
    second = submit(plain, "uppercase", {"text": "b"}, delay=3600)
    done = on(plain, "cancel", first, "no-such-task", second)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"{first}  cancelled", f"{second}  cancelled"]
    assert one_error(done) == "taskdesk: task no-such-task not found"
    assert status_of(plain, first) == status_of(plain, second) == "cancelled"
    again = on(plain, "cancel", first)
    assert again.returncode == 1
    assert one_error(again).startswith(f"taskdesk: cannot cancel task {first}: it is cancelled")
    retried = on(plain, "retry", first, "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["status"] == "queued"
    assert on(plain, "retry", second).stdout == f"{second}  queued\n"
    on(plain, "cancel", first, second)


def test_cancel_a_running_task_asks_it_to_stop(own: Server, tmp_path: Path) -> None:
    task_id, _ = gated(own, tmp_path)
    done = on(own, "cancel", task_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{task_id}  stopping  (asked to stop)\n"
    assert finished(own, task_id)["status"] == "cancelled"


# -- which Taskdesk, which token ---------------------------------------------------------------


def test_not_running(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args, env in ((["--port", str(port), "list"], None),
                      (["list"], {"TASKDESK_PORT": str(port)}),
                      (["list", "--url", f"http://127.0.0.1:{port}"], None)):
        done = taskdesk(*args, env=env)
        assert done.returncode == 1
        assert one_error(done) == (f"taskdesk: Taskdesk is not running at "
                                   f"http://127.0.0.1:{port} (connection refused)")


def test_the_port_comes_from_the_settings(plain: Server, tmp_path: Path) -> None:
    port = plain.proc.port
    assert taskdesk("--port", str(port), "stats").returncode == 0
    assert taskdesk("stats", env={"TASKDESK_PORT": str(port)}).returncode == 0
    actions = tmp_path / "actions.toml"
    actions.write_text(f"[settings]\nport = {port}\n", encoding="utf-8")
    assert taskdesk("--actions", str(actions), "stats").returncode == 0


def test_the_token_file_of_the_database(own: Server) -> None:
    # From --db (on()), from TASKDESK_DB, and given outright.
    assert on(own, "stats").returncode == 0
    assert taskdesk("stats", env={**own.env(), "TASKDESK_DB": str(own.db)}).returncode == 0
    assert taskdesk("stats", "--token", str(own.token), env=own.env()).returncode == 0
    assert taskdesk("stats", env={**own.env(), "TASKDESK_TOKEN": str(own.token)}).returncode == 0


def test_a_missing_token(own: Server, tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    done = taskdesk("--db", str(db), "list", env=own.env())
    assert done.returncode == 1
    assert one_error(done) == (
        "taskdesk: the API wants a token: pass --token or set TASKDESK_TOKEN (the token file "
        f"{db}.token was not found)")
    wrong = taskdesk("list", "--token", "not-it", env=own.env())
    assert wrong.returncode == 1
    assert one_error(wrong) == ("taskdesk: the API refused the token from --token: pass the "
                                "right one with --token or TASKDESK_TOKEN")


def test_the_statuses_the_command_line_knows_are_storages() -> None:
    from service.cli.commands import STATUSES as CLI_STATUSES

    assert list(CLI_STATUSES) == list(STATUSES)


def test_subcommands_import_nothing_heavy(plain: Server) -> None:
    task_id = submit(plain, "uppercase", {"text": "light"})
    code = f"""
import sys
import main
for args in (["list"], ["show", "{task_id}"], ["wait", "{task_id}"], ["stats"],
             ["submit", "sum", "numbers=1,2", "--wait"], ["log", "{task_id}"]):
    assert main.main(["--url", "{plain.url}"][:0] + args + ["--url", "{plain.url}"]) == 0, args
heavy = ("PySide6", "bottle", "cheroot", "jsonschema", "storage", "psycopg", "program", "gui",
         "sqlite3", "http.client")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


# -- shell completion --------------------------------------------------------------------------


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    parts = words.split(" ")
    done = taskdesk(env={"_TASKDESK_COMPLETE": "bash_complete", "COMP_WORDS": words,
                         "COMP_CWORD": str(len(parts) - 1), **(env or {})})
    assert done.returncode == 0, done.stderr
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line]


def test_shell_completion(plain: Server) -> None:
    script = taskdesk(env={"_TASKDESK_COMPLETE": "bash_source"})
    assert script.returncode == 0
    assert "complete -o nosort -F _taskdesk_completion taskdesk" in script.stdout
    assert complete("taskdesk su") == ["submit"]
    assert complete("taskdesk list --st") == ["--status"]
    assert complete("taskdesk list --status f") == ["failed"]
    # Actions and ids from the running Taskdesk.
    assert complete("taskdesk submit upp", plain.env()) == ["uppercase"]
    task_id = submit(plain, "uppercase", {"text": "complete me"})
    assert task_id in complete(f"taskdesk show {task_id[:6]}", plain.env())
    assert complete("taskdesk submit upp", {"TASKDESK_URL": "http://127.0.0.1:9"}) == []


# -- the queue and schedules ------------------------------------------------------------------


def test_pause_and_resume(plain: Server) -> None:
    done = on(plain, "pause")
    assert (done.returncode, done.stdout) == (0, "queue paused\n")
    try:
        assert plain.api.get("/stats").body["paused"] is True
        assert "queue       paused" in on(plain, "stats").stdout
    finally:
        resumed = on(plain, "resume", "--json")
    assert json.loads(resumed.stdout) == {"paused": False}
    assert plain.api.get("/stats").body["paused"] is False


def test_schedules(own: Server) -> None:
    listed = on(own, "schedules")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "ACTION", "WHEN", "STATE", "NEXT"]
    assert row.split()[:9] == ["yearly", "say", "cron", "0", "3", "1", "1", "*", "active"]
    assert json.loads(on(own, "schedules", "--json").stdout) == own.api.get("/schedules").body

    ran = on(own, "schedules", "run", "yearly")
    assert ran.returncode == 0, ran.stderr
    task = finished(own, ran.stdout.strip())
    assert (task["action"], task["data"]) == ("say", {"text": "happy new year"})

    paused = on(own, "schedules", "pause", "yearly")
    assert (paused.returncode, paused.stdout) == (0, "schedule yearly paused\n")
    assert own.api.get("/schedules").body["schedules"][0]["paused"] is True
    assert " paused " in on(own, "schedules").stdout
    # --url given to `schedules` serves its subcommand (the environment's URL is wrong here).
    resumed = taskdesk(*own.args(), "schedules", "--url", own.url, "resume", "yearly",
                       env={"TASKDESK_URL": "http://127.0.0.1:9"})
    assert (resumed.returncode, resumed.stdout) == (0, "schedule yearly resumed\n")
    assert own.api.get("/schedules").body["schedules"][0]["paused"] is False

    missing = on(own, "schedules", "run", "no-such-schedule")
    assert missing.returncode == 1
    assert one_error(missing) == "taskdesk: " + own.api.request(
        "POST", "/schedules/no-such-schedule/run", {}).body["error"]


# -- event streams, against a fake server ------------------------------------------------------

# What the fake's /events does on each connection, in turn: a stream body, sent and then the
# stream ends (as when Taskdesk stops) or stays open; after the last, it refuses with 503.
Stream = tuple[bytes, bool]  # (body, held open)


class FakeTaskdesk(ThreadingHTTPServer):
    """Answers GET /tasks/t1 with the task, its status taken from ``statuses`` one read at a
    time (the last one repeats; None: deleted); /events with ``events``: a status code for
    every request, or the streams to give one per connection."""

    daemon_threads = True

    def __init__(self, statuses: list[str | None], events: int | list[Stream]) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.statuses = statuses
        self.events = events
        self.task_reads = 0
        self.last_event_ids: list[str | None] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def task(self) -> dict[str, Any] | None:
        with self.lock:
            status = self.statuses[min(self.task_reads, len(self.statuses) - 1)]
            self.task_reads += 1
        if status is None:
            return None
        return {"id": "t1", "action": "x", "status": status, "error": None, "result": None}


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeTaskdesk
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self, status: int, body: dict[str, Any]) -> None:
        text = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def chunk(self, piece: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.flush()

    def do_POST(self) -> None:
        self.answer(404, {"error": "not found"})  # a Taskdesk older than the command line

    def do_GET(self) -> None:
        fake = self.server
        if self.path == "/tasks/t1":
            task = fake.task()
            if task is None:
                self.answer(404, {"error": "task t1 not found"})
            else:
                self.answer(200, task)
            return
        if self.path in ("/tasks", "/stats"):  # what a proxy in front may answer
            page = b"<html>Bad gateway</html>"
            self.send_response(200 if self.path == "/tasks" else 502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if self.path != "/events":
            self.answer(404, {"error": "not found"})
            return
        with fake.lock:
            fake.last_event_ids.append(self.headers.get("Last-Event-ID"))
            plan = fake.events
            stream = plan.pop(0) if isinstance(plan, list) and plan else None
        if stream is None:
            status = plan if isinstance(plan, int) else 503
            self.answer(status, {"error": "not found" if status == 404 else "too many"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        body, held = stream
        self.chunk(b": hello\n\n")
        self.chunk(body)
        if held:
            fake.stopping.wait(TIMEOUT)
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeTaskdesk]]:
    servers: list[FakeTaskdesk] = []

    def start(statuses: list[str | None], events: int | list[Stream]) -> FakeTaskdesk:
        server = FakeTaskdesk(statuses, events)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def event(name: str, status: str, event_id: int) -> bytes:
    data = json.dumps({"id": "t1", "status": status})
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


@pytest.mark.parametrize("status", [404, 503])
def test_wait_polls_a_taskdesk_that_will_not_stream(fake: Callable[..., FakeTaskdesk],
                                                    status: int) -> None:
    server = fake(["queued", "running", "running", "completed"], status)
    done = taskdesk("wait", "t1", "--url", server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "t1  completed\n"
    assert server.task_reads == 4  # read again each round until it ended


def test_wait_reads_a_task_again_only_when_an_event_says_it_ended_or_on_resync(
    fake: Callable[..., FakeTaskdesk]
) -> None:
    # One stream that stays open: "running" (not an ending: no read), then a resync (read
    # everything again: completed).
    server = fake(["queued", "completed"], [
        (event("task", "running", 40) + b"id: 41\nevent: resync\ndata: {}\n\n", True)])
    done = taskdesk("wait", "t1", "--url", server.url, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "t1  completed\n"
    assert server.task_reads == 2
    assert server.last_event_ids == [None]


def test_wait_resumes_after_the_last_event_it_saw(fake: Callable[..., FakeTaskdesk]) -> None:
    # The first stream ends (Taskdesk stopping); the next connection asks to resume after the
    # last id seen and is told the task completed.
    server = fake(["queued", "completed"], [
        (event("task", "running", 41), False), (event("task", "completed", 42), True)])
    done = taskdesk("wait", "t1", "--url", server.url, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "t1  completed\n"
    assert server.last_event_ids == [None, "41"]


def test_a_task_deleted_while_waited_for(fake: Callable[..., FakeTaskdesk]) -> None:
    server = fake(["running", None], [(event("deleted", "running", 9), True)])
    done = taskdesk("wait", "t1", "--url", server.url, timeout=20)
    assert done.returncode == 1
    assert done.stdout == "t1  deleted\n"
    assert one_error(done) == "taskdesk: task t1 deleted"


def test_an_answer_that_is_not_taskdesks(fake: Callable[..., FakeTaskdesk]) -> None:
    server = fake(["queued"], 503)
    listed = taskdesk("list", "--url", server.url)
    assert listed.returncode == 1
    assert one_error(listed).startswith(f"taskdesk: {server.url} gave an answer this command "
                                        "line does not understand (JSONDecodeError: ")
    stats = taskdesk("stats", "--url", server.url)
    assert stats.returncode == 1
    assert one_error(stats) == (f"taskdesk: {server.url} answered GET /stats with HTTP 502 "
                                "(not Taskdesk's JSON)")


def test_a_route_this_taskdesk_lacks_is_named(fake: Callable[..., FakeTaskdesk]) -> None:
    server = fake(["queued"], 404)
    done = taskdesk("pause", "--url", server.url)
    assert done.returncode == 1
    assert one_error(done) == (f"taskdesk: Taskdesk at {server.url} does not know POST "
                               "/queue/pause (it is older than this command line)")


def test_interrupting_wait_ends_it_quietly(own: Server, tmp_path: Path) -> None:
    task_id, gate = gated(own, tmp_path)
    waiting = background(own, "wait", task_id)
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.wait(1.0)
    waiting.send_signal(signal.SIGINT)
    assert waiting.wait(TIMEOUT) == 130
    _, err = waiting.communicate()
    assert "Traceback" not in err
    gate.touch()


# -- the picture in the README -----------------------------------------------------------------


def test_the_screenshot_wraps_and_colours_what_was_printed(tmp_path: Path, qapp: Any) -> None:
    import importlib.util

    from PySide6.QtGui import QColor, QImage

    spec = importlib.util.spec_from_file_location(
        "cli_screenshot", REPO_ROOT / "scripts" / "cli_screenshot.py")
    assert spec is not None and spec.loader is not None
    shot: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)

    # A terminal wraps at its width, and a wrapped row keeps the colour in force.
    assert shot.wrap("ab\x1b[32mcdef\x1b[0mgh", 4) == ["ab\x1b[32mcd", "\x1b[32mef\x1b[0mgh"]
    out = tmp_path / "cli.png"
    green = "\x1b[32m" + "█" * 20 + "\x1b[0m"
    shot.draw([("prompt", "taskdesk list"), ("output", "id  " + green)], out)
    image = QImage(str(out))
    assert image.width() > 800 and not image.isNull()
    colours = {QColor(image.pixel(x, y)).name() for x in range(0, image.width(), 3)
               for y in range(0, image.height(), 3)}
    assert shot.ANSI["32"] in colours  # the green the output asked for
