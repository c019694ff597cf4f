"""The watchdog: a small process that kills Taskdesk's running commands if Taskdesk dies.

Taskdesk tells it, through a pipe, each command's process group as it starts (``+ PGID
START``) and ends (``- PGID``). Only Taskdesk holds the pipe's writing end, so when Taskdesk
ends in any way, ``kill -9`` included, the kernel closes it and the watchdog reads the end
of the pipe: it then kills (SIGKILL) every process of the sessions still listed, started no
earlier than their leader, and exits. On a normal shutdown nothing is listed any more.

A command killed so soon after it started that Taskdesk had not told the watchdog yet is
found another way: every command's environment carries ``TASKDESK_OWNER=<pid>-<start time>``
of the Taskdesk that started it (inherited by what it starts), and the watchdog, given that
owner when it starts, also kills every process whose environment says so.

That covers what ``setpriv --pdeathsig KILL`` would (the direct child) and more (everything
the command started), and costs no extra exec per command: setpriv, a dynamically linked
program started before every command, halved how many commands per second a thread runs.
If the watchdog cannot be started, the runner falls back to setpriv.

Run as a program (``python -I -S watchdog.py``), this file uses the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

KILL_ROUNDS = 20
# A watchdog that keeps dying is given up on (the runner then uses setpriv).
MAX_STARTS = 10


# -- the watchdog process -----------------------------------------------------------------------


def _sessions(live: dict[int, int]) -> list[int]:
    """Pids of the processes (not zombies) in the listed sessions, started no earlier than
    the session's leader."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                text = file.read()
        except OSError:
            continue
        fields = text[text.rfind(b")") + 2:].split()
        try:
            state, sid, start = fields[0], int(fields[3]), int(fields[19])
        except (IndexError, ValueError):
            continue
        if sid in live and start >= live[sid] and state not in (b"Z", b"X"):
            found.append(int(name))
    return found


def _kill_all(live: dict[int, int]) -> None:
    for _ in range(KILL_ROUNDS):
        for pgid in live:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
        members = _sessions(live)
        if not members:
            return
        for pid in members:  # those that moved to a process group of their own
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


OWNER_VARIABLE = "TASKDESK_OWNER"


def owner_id() -> str:
    """This process as commands' environments name it: its pid and start time (so a pid
    used again later by another process is not taken for it)."""
    with open(f"/proc/{os.getpid()}/stat", "rb") as file:
        text = file.read()
    start = text[text.rfind(b")") + 2:].split()[19].decode()
    return f"{os.getpid()}-{start}"


def _marked(owner: bytes) -> list[int]:
    """Pids of the processes (not zombies) whose environment names *owner*."""
    marker = OWNER_VARIABLE.encode() + b"=" + owner
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as file:
                entries = file.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as file:
                text = file.read()
        except OSError:
            continue
        if marker in entries and text[text.rfind(b")") + 2:].split()[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found


def _kill_marked(owner: bytes) -> None:
    for _ in range(KILL_ROUNDS):
        pids = _marked(owner)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def main() -> None:
    # Ctrl-C or a hang-up meant for Taskdesk must not end the watchdog (it runs in a session
    # of its own anyway); only the end of the pipe does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    live: dict[int, int] = {}
    pending = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            parts = line.split()
            with contextlib.suppress(ValueError, IndexError):
                if parts[0] == b"+":
                    live[int(parts[1])] = int(parts[2])
                elif parts[0] == b"-":
                    live.pop(int(parts[1]), None)
    if live:
        _kill_all(live)
    if len(sys.argv) > 1:
        _kill_marked(sys.argv[1].encode())


# -- Taskdesk's side ----------------------------------------------------------------------------


class Watchdog:
    """Taskdesk's end of the watchdog: started at the first command, started again if it
    ever dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._live: dict[int, int] = {}
        self._starts = 0
        self.failed = False  # it could not be started: the caller uses setpriv instead
        self.owner = owner_id()
        with contextlib.suppress(AttributeError):  # not on every platform
            os.register_at_fork(after_in_child=self._forget)

    def available(self) -> bool:
        with self._lock:
            if self._fd is None and not self.failed:
                self._start()
            return self._fd is not None

    def started(self, pgid: int, start_time: int) -> None:
        with self._lock:
            self._live[pgid] = start_time
            self._send(f"+ {pgid} {start_time}\n".encode())

    def ended(self, pgid: int) -> None:
        with self._lock:
            if self._live.pop(pgid, None) is not None:
                self._send(f"- {pgid}\n".encode())

    def _send(self, line: bytes) -> None:
        for _ in range(2):
            if self._fd is None and not self._start():
                return
            assert self._fd is not None
            try:
                os.write(self._fd, line)
                return
            except OSError:  # it died: start another, which is told every live group
                self._close()

    def _start(self) -> bool:
        if self._proc is not None:
            self._proc.poll()  # reap the one that died
        self._starts += 1
        if self._starts > MAX_STARTS:  # it dies as soon as started: something is wrong
            self.failed = True
            return False
        read_end, write_end = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), self.owner],
                stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError:
            os.close(write_end)
            self.failed = True
            return False
        finally:
            os.close(read_end)
        self._fd = write_end
        if self._live:
            os.write(write_end, b"".join(f"+ {p} {s}\n".encode() for p, s in self._live.items()))
        return True

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _forget(self) -> None:
        # A forked child must not keep the pipe open (the watchdog would then outwait
        # Taskdesk) nor report groups that are its parent's.
        self._lock = threading.Lock()
        self._close()
        self._proc = None
        self._live = {}
        with contextlib.suppress(OSError):
            self.owner = owner_id()


if __name__ == "__main__":
    main()
