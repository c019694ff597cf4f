"""Running a command declared in the actions file: ``run_command(spec, data, ctx, …)``.

The command runs without a shell (unless its declaration says ``shell = true``), in a session
and process group of its own, stdin from /dev/null, stdout and stderr together into one pipe
that the calling thread reads: every chunk goes to ``ctx.log`` as it is, lines
``::progress P [message]`` (P from 0 to 100) to ``ctx.progress``, and the last 4 KiB are kept
for the result. Exit 0 is ``{"exit_code": 0, "output": <those 4 KiB>}``; anything else raises
CommandFailed quoting the last lines.

Nothing of the group outlives the run: on cancel or timeout the group gets SIGTERM, and
SIGKILL after *kill_grace* seconds if anything is still alive; what the command left behind
when it exited gets the same. If Taskdesk itself dies, the watchdog process kills the group
(watchdog.py; ``setpriv --pdeathsig KILL`` for the direct child where it cannot run), and
the ProcessReaper's records let the next start kill anything that escaped both.

The thread sleeps in poll() on the pipe and a pidfd of the child, so it returns as soon as
the child has exited and the pipe is at its end; the 0.1 s timeout only serves to notice
``ctx.cancelled`` and the deadline.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from service.actions import placeholders, procfs
from service.actions.base import ActionCancelled, JsonObject, RunContext
from service.actions.reaper import ProcessReaper
from service.actions.watchdog import OWNER_VARIABLE, Watchdog

log = logging.getLogger("taskdesk.actions")

TAIL_BYTES = 4096
POLL_SECONDS = 0.1
READ_BYTES = 65536
# Lines of output quoted in a failed attempt's error.
ERROR_LINES = 10
# After the group is gone, how long a process outside it (one that called setsid) may keep
# the pipe open before the runner stops reading.
STRAY_WRITER_SECONDS = 1.0
# How long to wait for processes to die after SIGKILL before giving up on them.
KILL_WAIT_SECONDS = 5.0

INHERITED_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "TERM"})

_PROGRESS = re.compile(
    rb"::progress[ \t]+([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[ \t]+(.*?))?[ \t]*\Z", re.DOTALL)


class CommandFailed(Exception):  # noqa: N818 (says what happened, like TimeoutError)
    """A command that exited with a code other than 0, or was killed by a signal."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class CommandSpec:
    """A declared command. With *shell*, *argv* is one string run by ``/bin/sh -c``."""

    argv: Sequence[str]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    shell: bool = False


# -- before the start ---------------------------------------------------------------------------


def command_line(spec: CommandSpec, data: Mapping[str, object]) -> list[str]:
    """The argv to execute: placeholders filled from *data* (PlaceholderError if they cannot
    be)."""
    if spec.shell:
        if len(spec.argv) != 1:
            raise placeholders.PlaceholderError("a shell command is one string")
        return ["/bin/sh", "-c", placeholders.fill_shell(spec.argv[0], data)]
    argv: list[str] = []
    for template in spec.argv:
        argv.extend(placeholders.fill_argument(template, data))
    if not argv:
        raise placeholders.PlaceholderError("the command line is empty")
    return argv


def command_env(spec: CommandSpec, ctx: RunContext) -> dict[str, str]:
    """A minimal inherited environment, the action's additions and the task's identity."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    env.update(spec.env)
    env["TASKDESK_TASK_ID"] = ctx.task_id
    env["TASKDESK_ATTEMPT"] = str(ctx.attempt)
    env[OWNER_VARIABLE] = WATCHDOG.owner  # see watchdog.py: found even if never registered
    return env


# Kills the running commands' groups if Taskdesk dies (see watchdog.py).
WATCHDOG = Watchdog()

_death_signal_lock = threading.Lock()
_death_signal_prefix: list[str] | None = None


def death_signal_prefix() -> list[str]:
    """``[setpriv, --pdeathsig, KILL, --]`` when setpriv can do it here, else []: the
    fallback when the watchdog cannot run, so that at least the direct child dies with
    Taskdesk (preexec_fn, the other way, is unsafe in a process with threads)."""
    global _death_signal_prefix
    with _death_signal_lock:
        if _death_signal_prefix is None:
            _death_signal_prefix = _find_setpriv()
        return _death_signal_prefix


def _find_setpriv() -> list[str]:
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    try:
        if prefix and subprocess.run([*prefix, "true"], capture_output=True,
                                     timeout=10).returncode == 0:
            return prefix
    except (OSError, subprocess.SubprocessError):
        pass
    log.warning("neither the watchdog nor setpriv --pdeathsig (util-linux) can run: a "
                "command running when Taskdesk is killed keeps running until the next start "
                "ends it")
    return []


# -- running ------------------------------------------------------------------------------------


def run_command(
    spec: CommandSpec,
    data: JsonObject,
    ctx: RunContext,
    *,
    kill_grace: float,
    default_timeout: float,
    reaper: ProcessReaper | None,
) -> JsonObject:
    """Run *spec* with *data*; the result of exit 0, else CommandFailed, ActionCancelled
    (``ctx.cancelled`` was set) or TimeoutError. No process of its group is left after."""
    argv = command_line(spec, data)
    env = command_env(spec, ctx)
    cwd = os.path.expanduser(spec.cwd) if spec.cwd else None
    timeout = spec.timeout if spec.timeout is not None else default_timeout
    if ctx.cancelled.is_set():
        raise ActionCancelled()
    guarded = WATCHDOG.available()
    try:
        proc = subprocess.Popen(
            [*([] if guarded else death_signal_prefix()), *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True, bufsize=0,
        )
    except OSError as exc:
        # The file it names is the program itself, or the cwd that is not there.
        what = f": {exc.filename}" if exc.filename and exc.filename != argv[0] else ""
        raise CommandFailed(f"cannot start {argv[0]}: {exc.strerror or exc}{what}") from None
    run = _Run(proc, ctx, time.monotonic() + timeout, kill_grace)
    record = None
    try:
        # Not reaped yet, so the pid is still this child's: its start time tells it apart
        # from a process given the same pid later.
        leader = procfs.read_stat(proc.pid)
        if guarded and leader is not None:
            WATCHDOG.started(proc.pid, leader.start_time)
        if reaper is not None:
            record = reaper.add(proc.pid, ctx.task_id, ctx.attempt, leader)
        run.supervise()
    finally:
        if run.end_group():
            WATCHDOG.ended(proc.pid)
            if record is not None and reaper is not None:
                reaper.remove(record)
        run.close()
    if run.stopped == "cancelled":
        raise ActionCancelled()
    if run.stopped == "timeout":
        raise TimeoutError(f"the command did not finish within {timeout:g} s")
    code = proc.returncode
    if code == 0:
        return {"exit_code": 0, "output": run.output()}
    if code < 0:
        try:
            what = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            what = f"killed by signal {-code}"
    else:
        what = f"exit code {code}"
    lines = run.output().splitlines()[-ERROR_LINES:]
    quoted = "; the last lines of output:\n" + "\n".join(lines) if lines else " (no output)"
    raise CommandFailed(what + quoted, code)


class ProgressLines:
    """Finds the lines ``::progress P [message]`` (P from 0 to 100, may be a float) in output
    arriving in chunks, and reports them to ``ctx.progress(P / 100, message)``."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.line = bytearray()  # the line being written
        self.skipping = False  # that line is too long to be a progress line

    def feed(self, chunk: bytes) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not self.skipping:
                    self.line += chunk[start:]
                    if len(self.line) > TAIL_BYTES:
                        self.line.clear()
                        self.skipping = True
                return
            if not self.skipping:
                self.line += chunk[start:end]
                if len(self.line) <= TAIL_BYTES and self.line.startswith(b"::progress"):
                    self._report(bytes(self.line.rstrip(b"\r")))
            self.line.clear()
            self.skipping = False
            start = end + 1

    def _report(self, line: bytes) -> None:
        match = _PROGRESS.match(line)
        if match is None:
            return
        percent = float(match.group(1))
        if percent > 100.0:
            return
        message = (match.group(2) or b"").decode("utf-8", "replace").strip() or None
        self.ctx.progress(percent / 100.0, message)


class _Run:
    """One running command: reads its output, stops it when asked, ends its group."""

    def __init__(self, proc: subprocess.Popen[bytes], ctx: RunContext, deadline: float,
                 kill_grace: float) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.ctx = ctx
        self.deadline = deadline
        self.kill_grace = kill_grace
        self.pgid = proc.pid  # start_new_session: the child leads its own session and group
        self.fd = proc.stdout.fileno()
        self.pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(proc.pid)
        self.tail = bytearray()
        self.progress = ProgressLines(ctx)
        self.stopped: str | None = None  # "cancelled", "timeout" or "leftovers"
        self.term_sent_at: float | None = None
        self.kill_sent = False
        self.pipe_open = True

    # -- the loop -----------------------------------------------------------------------------

    def supervise(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if self.pidfd is not None:
            poller.register(self.pidfd, select.POLLIN)
        self.pipe_open = True
        exited = False
        stray_deadline: float | None = None
        while self.pipe_open or not exited:
            now = time.monotonic()
            if self.stopped is None and not exited:
                if self.ctx.cancelled.is_set():
                    self._terminate("cancelled", now)
                elif now >= self.deadline:
                    self._terminate("timeout", now)
            if (self.term_sent_at is not None and not self.kill_sent
                    and now >= self.term_sent_at + self.kill_grace):
                self._signal_session(signal.SIGKILL)
                self.kill_sent = True
            if exited and self.kill_sent and self.pipe_open:
                # What holds the pipe now is outside the group (it called setsid).
                stray_deadline = stray_deadline or now + STRAY_WRITER_SECONDS
                if now >= stray_deadline:
                    break
            wait = POLL_SECONDS
            if self.stopped is None:
                wait = min(wait, self.deadline - now)
            elif not self.kill_sent and self.term_sent_at is not None:
                wait = min(wait, self.term_sent_at + self.kill_grace - now)
            for fd, _ in poller.poll(max(wait, 0.0) * 1000):
                if fd == self.fd:
                    if self.pipe_open and not self._read():
                        poller.unregister(self.fd)
                        self.pipe_open = False
                elif fd == self.pidfd:
                    poller.unregister(self.pidfd)
                    exited = True
            if self.pidfd is None and not exited:
                # No pidfd (a kernel before 5.3): look at the child on every turn instead.
                exited = self.proc.poll() is not None
            if exited and self.pipe_open and self.stopped is None:
                # Read what the command wrote before it ended; if the pipe is still open
                # after that, something it started holds it: end the group.
                self._drain(poller)
                if self.pipe_open:
                    self._terminate("leftovers", time.monotonic())
        self.proc.wait()

    def _drain(self, poller: select.poll) -> None:
        while self.pipe_open and poller.poll(0):
            if not self._read():
                poller.unregister(self.fd)
                self.pipe_open = False

    def _terminate(self, why: str, now: float) -> None:
        self.stopped = why
        self.term_sent_at = now
        self._signal_session(signal.SIGTERM)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, READ_BYTES)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return True
            raise
        if not chunk:
            return False
        self.ctx.log(chunk)
        self.tail += chunk
        if len(self.tail) > 2 * TAIL_BYTES:
            del self.tail[:-TAIL_BYTES]
        self.progress.feed(chunk)
        return True

    # -- the end ------------------------------------------------------------------------------

    def end_group(self) -> bool:
        """Make sure nothing of the group is left (TERM, grace, KILL); True once it is gone.

        The leader has been waited for when this runs normally; if the loop was left by an
        exception, it is killed first. The group id cannot name another group meanwhile: a
        pid stays taken while any process has it as group or session id.
        """
        if self.proc.returncode is None:
            self._signal_group(signal.SIGKILL)
            self.kill_sent = True
            self.proc.wait()
        if not self._group_alive():
            return True
        if self.term_sent_at is None:
            self.term_sent_at = time.monotonic()
            self.stopped = self.stopped or "leftovers"
            self._signal_session(signal.SIGTERM)
        while not self.kill_sent and time.monotonic() < self.term_sent_at + self.kill_grace:
            if not self._group_alive():
                return True
            time.sleep(0.01)  # only for leftovers that outlive the command itself
        self._signal_session(signal.SIGKILL)
        self.kill_sent = True
        give_up = time.monotonic() + KILL_WAIT_SECONDS
        while time.monotonic() < give_up:
            if not self._group_alive():
                return True
            time.sleep(0.01)
            self._signal_session(signal.SIGKILL)
        log.warning("process group %d still has processes %s s after SIGKILL",
                    self.pgid, KILL_WAIT_SECONDS)
        return False

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        # Something has the group id, perhaps only zombies (an init that does not reap
        # orphans): look closer. Members that moved to a group of their own count too.
        return bool(procfs.session_members(self.pgid))

    def _signal_session(self, signum: int) -> None:
        self._signal_group(signum)
        for member in procfs.session_members(self.pgid):
            if member.pgid != self.pgid:
                procfs.signal_if_same(member, signum)

    def output(self) -> str:
        tail = bytes(self.tail[-TAIL_BYTES:])
        if len(self.tail) > TAIL_BYTES:
            # Cut where a character starts, not inside one.
            skip = 0
            while skip < 3 and skip < len(tail) and 0x80 <= tail[skip] < 0xC0:
                skip += 1
            tail = tail[skip:]
        return tail.decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None
