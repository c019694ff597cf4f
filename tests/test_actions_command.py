"""The command runner with real processes: arguments, environment, output, progress, exit
codes and signals, and that nothing a command started outlives it: on exit, timeout, cancel,
and when Taskdesk itself is killed -9 (the watchdog, setpriv, the reaper's sweep)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import service.actions.command as command
from service.actions import (
    ActionCancelled,
    CommandFailed,
    CommandSpec,
    PlaceholderError,
    ProcessReaper,
    SimpleContext,
    run_command,
)
from service.actions.command import ProgressLines

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# -- helpers ----------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[bytes, int, int] | None:
    """(state, session id, start time) of *pid*, read here rather than with the code under
    test."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()
    return fields[0], int(fields[3]), int(fields[19])


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in (b"Z", b"X")


def session(sid: int) -> list[int]:
    """The processes of session *sid* that have not ended (zombies do not count: this
    container's init does not reap orphans)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == sid and stat[0] not in (b"Z", b"X"):
                pids.append(int(name))
    return pids


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


@pytest.fixture
def sessions() -> Iterator[list[int]]:
    """Session ids to clean up after a test, whatever its outcome."""
    ids: list[int] = []
    yield ids
    for sid in ids:
        for pid in session(sid):
            os.kill(pid, signal.SIGKILL)


class Ctx(SimpleContext):
    def __init__(self, task_id: str = "task-1", attempt: int = 1) -> None:
        super().__init__(task_id, attempt)
        self.chunks: list[bytes] = []
        self.progressed: list[tuple[float | None, str | None]] = []
        self.lock = threading.Lock()

    def log(self, text: str | bytes) -> None:
        assert isinstance(text, bytes)
        with self.lock:
            self.chunks.append(text)

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self.progressed.append((fraction, message))

    def logged(self) -> bytes:
        with self.lock:
            return b"".join(self.chunks)

    def first_number(self) -> int | None:
        line = self.logged().split(b"\n", 1)
        return int(line[0]) if len(line) == 2 else None


def run(argv: list[str], data: dict[str, Any] | None = None, ctx: Ctx | None = None,
        *, kill_grace: float = 5.0, default_timeout: float = 60.0,
        reaper: ProcessReaper | None = None, **spec: Any) -> dict[str, Any]:
    return run_command(CommandSpec(argv, **spec), data or {}, ctx or Ctx(),
                       kill_grace=kill_grace, default_timeout=default_timeout, reaper=reaper)


class Background:
    """run() on a thread, so that the test can watch and cancel it."""

    def __init__(self, argv: list[str], ctx: Ctx, **options: Any) -> None:
        self.ctx = ctx
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(argv, options), daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self, argv: list[str], options: dict[str, Any]) -> None:
        try:
            self.result = run(argv, ctx=self.ctx, **options)
        except BaseException as exc:
            self.error = exc

    def join(self, limit: float = 30.0) -> float:
        """Seconds since the start, once it has returned (within *limit*)."""
        self.thread.join(limit)
        assert not self.thread.is_alive(), f"still running after {limit} s"
        return time.monotonic() - self.started


# -- what it runs -----------------------------------------------------------------------------


def test_exit_0_is_the_result_with_stdout_and_stderr_together() -> None:
    ctx = Ctx()
    result = run(["sh", "-c", "echo out; echo err >&2; echo more"], ctx=ctx)
    assert result == {"exit_code": 0, "output": "out\nerr\nmore\n"}
    assert ctx.logged() == b"out\nerr\nmore\n"


def test_another_exit_code_fails_quoting_the_last_lines() -> None:
    with pytest.raises(CommandFailed) as caught:
        run(["sh", "-c", "for i in $(seq 1 20); do echo line $i; done; exit 3"])
    lines = "\n".join(f"line {i}" for i in range(11, 21))
    assert str(caught.value) == f"exit code 3; the last lines of output:\n{lines}"
    assert caught.value.exit_code == 3


def test_a_signal_fails_naming_it() -> None:
    with pytest.raises(CommandFailed, match=r"^killed by signal SIGTERM \(no output\)$"):
        run(["sh", "-c", "kill -TERM $$"])
    with pytest.raises(CommandFailed, match=r"^killed by signal SIGKILL; the last lines"):
        run(["sh", "-c", "echo bye; kill -KILL $$"])


def test_values_are_single_arguments_never_parsed_by_a_shell(tmp_path: Path) -> None:
    nasty = "two words; touch pwned && $(touch pwned2) `touch pwned3` 'q' \"d\" * ~ | > <"
    argv = [PYTHON, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
            "{a}", "x={b}", "{n}", "{f}", "{t}", "{{b}}", "{files}", "{none}"]
    data = {"a": nasty, "b": "é\n€", "n": 42, "f": 1.5, "t": True, "files": ["1 2", 3, False],
            "none": []}
    result = run(argv, data, cwd=str(tmp_path))
    assert json.loads(result["output"]) == [nasty, "x=é\n€", "42", "1.5", "true", "{b}", "1 2",
                                            "3", "false"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "data", "message"), [
    (["echo", "{x}"], {}, "data.x is missing; the command's {x} needs it"),
    (["echo", "{x}"], {"x": None}, "data.x is null"),
    (["echo", "{x}"], {"x": {"a": 1}}, "data.x is an object"),
    (["echo", "--x={x}"], {"x": ["a"]}, "data.x is a list; {x} takes a string, number or"),
    (["echo", "{x}"], {"x": [["a"]]}, "data.x[0] is a list"),
    (["echo", "{x}"], {"x": "a\0b"}, "data.x holds a NUL character"),
    (["echo", "{x"], {"x": 1}, "unmatched '{'"),
])
def test_values_that_cannot_be_arguments_are_clear_errors(
    argv: list[str], data: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlaceholderError, match=message.replace("{", r"\{").replace("[", r"\[")):
        run(argv, data)


def test_with_shell_values_are_quoted_for_it(tmp_path: Path) -> None:
    data = {"x": "\"; touch pwned; echo \"", "y": "$(touch pwned2) it's", "list": ["a b", "c"]}
    result = run(["printf '%s|' {x} {y} {list}"], data, shell=True, cwd=str(tmp_path))
    assert result["output"] == "\"; touch pwned; echo \"|$(touch pwned2) it's|a b|c|"
    assert list(tmp_path.iterdir()) == []


def test_the_environment_is_minimal_plus_the_actions_and_the_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKDESK_TEST_SECRET", "s3cret")
    monkeypatch.setenv("LC_PAPER", "C")
    monkeypatch.setenv("TZ", "UTC")
    result = run(["env"], ctx=Ctx("task-7", 2), env={"EXTRA": "yes", "TZ": "Europe/Paris"})
    env = dict(line.split("=", 1) for line in result["output"].splitlines())
    assert "TASKDESK_TEST_SECRET" not in env
    assert (env["LC_PAPER"], env["EXTRA"], env["TZ"]) == ("C", "yes", "Europe/Paris")
    assert (env["TASKDESK_TASK_ID"], env["TASKDESK_ATTEMPT"]) == ("task-7", "2")
    assert env["TASKDESK_OWNER"] == command.WATCHDOG.owner  # what the watchdog looks for
    allowed = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "TERM", "EXTRA",
               "TASKDESK_TASK_ID", "TASKDESK_ATTEMPT", "TASKDESK_OWNER"}
    assert {k for k in env if not k.startswith("LC_")} <= allowed


def test_cwd_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run(["pwd"], cwd="~")["output"] == f"{tmp_path}\n"
    with pytest.raises(CommandFailed, match=r"^cannot start pwd: No such file or directory: "
                                            f"{tmp_path}/missing$"):
        run(["pwd"], cwd=str(tmp_path / "missing"))


def test_stdin_is_dev_null() -> None:
    # Whatever Taskdesk's own stdin is: a pipe nobody writes to, here.
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    try:
        assert run(["cat"], default_timeout=5)["output"] == ""
        assert run(["readlink", "/proc/self/fd/0"])["output"] == "/dev/null\n"
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)


def test_an_unknown_program_fails_clearly() -> None:
    with pytest.raises(CommandFailed,
                       match=r"^cannot start no-such-program-td: No such file or directory$"):
        run(["no-such-program-td"])


def test_nothing_starts_once_cancelled(tmp_path: Path) -> None:
    ctx = Ctx()
    ctx.cancelled.set()
    with pytest.raises(ActionCancelled):
        run(["touch", str(tmp_path / "ran")], ctx=ctx)
    assert not (tmp_path / "ran").exists()


# -- output ---------------------------------------------------------------------------------


def test_progress_lines_set_the_progress_and_stay_in_the_log() -> None:
    script = r"""
        printf '::progress 10\n'
        printf '::progress 55.5 halfway there\n'
        printf '::progress 101 too much\n::progress -1\n::progress x\n  ::progress 20\n'
        printf '::progress 50%%\n::progressive 30\n'
        printf '::progress 100 done\r\n'
    """
    ctx = Ctx()
    result = run(["sh", "-c", script], ctx=ctx)
    assert ctx.progressed == [(0.1, None), (0.555, "halfway there"), (1.0, "done")]
    assert "::progress 55.5 halfway there\n" in result["output"]


def test_progress_lines_split_across_chunks() -> None:
    ctx = Ctx()
    lines = ProgressLines(ctx)
    for chunk in [b"noise\n::prog", b"ress 4", b"0 fou", b"r\xc3", b"\xa9\n::progress 5", b"0\n",
                  b"::progress 60 " + b"x" * 5000 + b"\n", b"::progress 70\n"]:
        lines.feed(chunk)
    assert ctx.progressed == [(0.4, "fouré"), (0.5, None), (0.7, None)]


def test_the_result_keeps_the_last_4_kib() -> None:
    result = run(["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a; printf END"])
    assert result["output"] == "a" * 4093 + "END"
    # Cut inside a two-byte character: the result starts at the next whole one.
    result = run([PYTHON, "-c", "import sys; sys.stdout.write('é' * 3000 + 'x')"])
    assert result["output"] == "é" * 2047 + "x"


def test_the_log_gets_the_bytes_as_they_are() -> None:
    ctx = Ctx()
    result = run(["printf", "\\377\\376ok\\n"], ctx=ctx)
    assert ctx.logged() == b"\xff\xfeok\n"
    assert result["output"] == "\ufffd\ufffdok\n"


def test_a_command_returns_as_soon_as_it_exits() -> None:
    started = time.monotonic()
    for _ in range(20):
        run(["true"])
    # Polling with the 0.1 s timeout instead of waking on the exit would take 2 s.
    assert time.monotonic() - started < 1.5


# -- nothing is left behind -------------------------------------------------------------------


GRANDCHILD = "echo $$; sleep 300 & sleep 300"


def test_timeout_ends_the_whole_group(sessions: list[int]) -> None:
    ctx = Ctx()
    job = Background(["sh", "-c", GRANDCHILD], ctx, timeout=0.5, kill_grace=5)
    wait_until(lambda: ctx.first_number() is not None, "the command has started")
    sid = ctx.first_number()
    assert sid is not None
    sessions.append(sid)
    elapsed = job.join(limit=10)
    assert isinstance(job.error, TimeoutError)
    assert str(job.error) == "the command did not finish within 0.5 s"
    assert session(sid) == []
    assert 0.5 <= elapsed < 3  # SIGTERM was enough: no wait for the grace period
    with pytest.raises(TimeoutError, match=r"within 0\.3 s"):
        run(["sleep", "300"], default_timeout=0.3)


def test_cancel_ends_the_whole_group(sessions: list[int]) -> None:
    ctx = Ctx()
    job = Background(["sh", "-c", GRANDCHILD], ctx, kill_grace=5)
    wait_until(lambda: ctx.first_number() is not None, "the command has started")
    sid = ctx.first_number()
    assert sid is not None
    sessions.append(sid)
    wait_until(lambda: len(session(sid)) == 3, "sh and both sleeps run")
    ctx.cancelled.set()
    assert job.join() < 5
    assert isinstance(job.error, ActionCancelled), job.error
    assert session(sid) == []


def test_sigkill_follows_the_grace_period(sessions: list[int]) -> None:
    ctx = Ctx()
    job = Background(["sh", "-c", "trap '' TERM; echo $$; sleep 300 & wait"], ctx,
                     kill_grace=0.5)
    wait_until(lambda: ctx.first_number() is not None, "the command has started")
    sid = ctx.first_number()
    assert sid is not None
    sessions.append(sid)
    wait_until(lambda: len(session(sid)) == 2, "sh and the sleep run")
    cancelled_at = time.monotonic()
    ctx.cancelled.set()
    job.join()
    assert time.monotonic() - cancelled_at >= 0.5
    assert isinstance(job.error, ActionCancelled)
    assert session(sid) == []


@pytest.mark.parametrize("script", [
    "sleep 300 & echo $$",  # the sleep holds the pipe
    "sleep 300 >/dev/null 2>&1 & echo $$",  # it does not
])
def test_what_a_command_leaves_behind_is_ended(sessions: list[int], script: str) -> None:
    ctx = Ctx()
    job = Background(["sh", "-c", script], ctx, kill_grace=5)
    wait_until(lambda: ctx.first_number() is not None, "the command has started")
    sid = ctx.first_number()
    assert sid is not None
    sessions.append(sid)
    job.join(limit=10)
    assert job.result is not None and job.result["exit_code"] == 0, job.error
    assert session(sid) == []


def test_a_process_in_a_group_of_its_own_is_ended_too(sessions: list[int]) -> None:
    code = ("import os, subprocess; p = subprocess.Popen(['sleep', '300'], process_group=0); "
            "print(os.getsid(0), p.pid, flush=True); p.wait()")
    ctx = Ctx()
    job = Background([PYTHON, "-c", code], ctx, kill_grace=5)
    wait_until(lambda: b"\n" in ctx.logged(), "the sleep has started")
    sid, sleeper = map(int, ctx.logged().split())
    sessions.append(sid)
    assert os.getpgid(sleeper) == sleeper != sid
    ctx.cancelled.set()
    job.join()
    assert isinstance(job.error, ActionCancelled)
    assert not alive(sleeper) and session(sid) == []


def test_a_running_command_is_recorded_for_the_reaper(tmp_path: Path,
                                                      sessions: list[int]) -> None:
    reaper = ProcessReaper(tmp_path / "reaper")
    ctx = Ctx("task-r", 3)
    job = Background(["sh", "-c", GRANDCHILD], ctx, reaper=reaper)
    wait_until(lambda: ctx.first_number() is not None, "the command has started")
    sid = ctx.first_number()
    assert sid is not None
    sessions.append(sid)
    (record,) = list((tmp_path / "reaper").iterdir())
    assert record.stat().st_mode & 0o777 == 0o600
    content = json.loads(record.read_text())
    stat = proc_stat(sid)
    assert stat is not None
    assert (content["pgid"], content["sid"], content["start_time"]) == (sid, sid, stat[2])
    assert (content["task_id"], content["attempt"], content["owner_pid"]) == (
        "task-r", 3, os.getpid())
    ctx.cancelled.set()
    job.join()
    assert list((tmp_path / "reaper").iterdir()) == []


def test_the_watchdog_is_started_again_if_it_dies() -> None:
    run(["true"])
    first = command.WATCHDOG._proc
    assert first is not None and first.poll() is None
    first.kill()
    first.wait()
    assert run(["echo", "ok"])["output"] == "ok\n"
    second = command.WATCHDOG._proc
    assert second is not None and second is not first and second.poll() is None


# -- Taskdesk killed -9 -----------------------------------------------------------------------


HELPER = """
import sys
from pathlib import Path
import service.actions.command as command
from service.actions import CommandSpec, ProcessReaper, SimpleContext, run_command
mode, folder, pid_file = sys.argv[1:]
if mode == "setpriv":
    command.WATCHDOG.failed = True  # as where the watchdog cannot run
spec = CommandSpec(["sh", "-c", 'echo $$ > "$0"; sleep 300 & sleep 301', "{file}"])
run_command(spec, {"file": pid_file}, SimpleContext("task-9", 1), kill_grace=1,
            default_timeout=600, reaper=ProcessReaper(Path(folder)))
"""


def start_helper(tmp_path: Path, mode: str, sessions: list[int]) -> tuple[int, Path]:
    """A "Taskdesk" running a command with a grandchild: killed -9 once all of it runs.
    Returns the command's session id and the reaper's folder."""
    folder, pid_file = tmp_path / "reaper", tmp_path / "pid"
    helper = subprocess.Popen([PYTHON, "-c", HELPER, mode, str(folder), str(pid_file)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"),
                   "the command has started")
        sid = int(pid_file.read_text())
        sessions.append(sid)
        wait_until(lambda: len(session(sid)) == 3, "sh and both sleeps run")
        assert len(list(folder.glob("*.json"))) == 1
    finally:
        helper.kill()
        helper.wait()
    return sid, folder


def test_killing_taskdesk_kills_its_commands(tmp_path: Path, sessions: list[int]) -> None:
    sid, folder = start_helper(tmp_path, "watchdog", sessions)
    wait_until(lambda: session(sid) == [], "the watchdog has killed the group")
    # The next start finds the record and nothing left to kill.
    assert ProcessReaper(folder).sweep() == []
    assert list(folder.iterdir()) == []


def test_the_watchdog_also_kills_a_command_it_was_never_told_of(
    tmp_path: Path, sessions: list[int]
) -> None:
    """Taskdesk killed between starting a command and telling the watchdog: the command's
    environment names its owner, and the watchdog kills what names the Taskdesk that died."""
    from service.actions.watchdog import OWNER_VARIABLE

    owner = "4242-123456"
    pid_file = tmp_path / "pid"
    stray = subprocess.Popen(
        ["sh", "-c", 'echo $$ > "$0"; sleep 300 & sleep 301', str(pid_file)],
        env={**os.environ, OWNER_VARIABLE: owner}, start_new_session=True)
    other = subprocess.Popen(["sleep", "300"], env={**os.environ, OWNER_VARIABLE: "1-1"})
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"),
                   "the command has started")
        sessions.append(stray.pid)
        wait_until(lambda: len(session(stray.pid)) == 3, "sh and both sleeps run")
        watchdog = subprocess.Popen([PYTHON, "-I", "-S", str(ROOT / "service/actions/watchdog.py"),
                                     owner], stdin=subprocess.PIPE)
        assert watchdog.stdin is not None
        watchdog.stdin.close()  # as when the Taskdesk holding the pipe dies
        watchdog.wait(30)
        wait_until(lambda: session(stray.pid) == [], "the marked processes are killed")
        assert alive(other.pid)  # another owner's are left alone
    finally:
        stray.kill()
        other.kill()
        stray.wait()
        other.wait()


def test_without_the_watchdog_setpriv_kills_the_child_and_the_sweep_the_rest(
    tmp_path: Path, sessions: list[int]
) -> None:
    if not command._find_setpriv():
        pytest.skip("no setpriv --pdeathsig here")
    sid, folder = start_helper(tmp_path, "setpriv", sessions)
    wait_until(lambda: not alive(sid), "the direct child has died with its parent")
    orphans = session(sid)
    assert len(orphans) == 2  # the two sleeps: only the next start can end them
    lines = ProcessReaper(folder).sweep()
    assert lines == [f"killed leftover process group {sid} of task task-9"]
    assert session(sid) == []
    assert list(folder.iterdir()) == []


# -- the sweep never kills what is not its own --------------------------------------------------


def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def recorded(reaper: ProcessReaper, pid: int, task_id: str, **changes: Any) -> Path:
    """A record for *pid* as a Taskdesk that is no longer running would have left it."""
    path = reaper.add(pid, task_id, 1)
    assert path is not None
    content = json.loads(path.read_text())
    content.update(owner_pid=dead_pid(), **changes)
    path.write_text(json.dumps(content))
    return path


def test_a_running_taskdesk_keeps_its_records(tmp_path: Path, sessions: list[int]) -> None:
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    sessions.append(sleeper.pid)
    reaper = ProcessReaper(tmp_path)
    record = reaper.add(sleeper.pid, "task-live", 1)  # owned by this, running, process
    assert ProcessReaper(tmp_path).sweep() == []
    assert alive(sleeper.pid) and record is not None and record.exists()
    sleeper.kill()
    sleeper.wait()


def test_a_process_older_than_the_record_is_not_killed(tmp_path: Path,
                                                       sessions: list[int]) -> None:
    # As if the recorded group had ended and its pid had gone to this process since: then
    # the recorded start time is later than this process's.
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    sessions.append(sleeper.pid)
    reaper = ProcessReaper(tmp_path)
    stat = proc_stat(sleeper.pid)
    assert stat is not None
    record = recorded(reaper, sleeper.pid, "task-old", start_time=stat[2] + 100)
    assert reaper.sweep() == []
    assert alive(sleeper.pid) and not record.exists()
    sleeper.kill()
    sleeper.wait()


def test_a_process_without_the_tasks_mark_is_reported_not_killed(
    tmp_path: Path, sessions: list[int]
) -> None:
    leader = subprocess.Popen(["sh", "-c", "env -i sleep 300 & exec sleep 301"],
                              start_new_session=True,
                              env={"PATH": os.environ["PATH"], "TASKDESK_TASK_ID": "task-s"})
    sessions.append(leader.pid)

    def stranger() -> int | None:
        for pid in session(leader.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                if file.read() == b"sleep\x00300\x00":
                    return pid
        return None

    wait_until(lambda: stranger() is not None and len(session(leader.pid)) == 2,
               "both sleeps run")
    other = stranger()
    reaper = ProcessReaper(tmp_path)
    recorded(reaper, leader.pid, "task-s")
    lines = reaper.sweep()
    assert lines == [
        f"killed leftover process group {leader.pid} of task task-s",
        f"process group {leader.pid} of task task-s: process(es) {other} still in its "
        "session were not killed: they could not be identified as its own"]
    leader.wait()
    assert other is not None and alive(other)


def test_records_of_another_boot_are_dropped(tmp_path: Path, sessions: list[int]) -> None:
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    sessions.append(sleeper.pid)
    reaper = ProcessReaper(tmp_path)
    record = recorded(reaper, sleeper.pid, "task-b", boot_id="another boot")
    (tmp_path / "garbage.json").write_text("{not json")
    assert reaper.sweep() == []
    assert alive(sleeper.pid) and not record.exists()
    assert list(tmp_path.iterdir()) == []
    sleeper.kill()
    sleeper.wait()
