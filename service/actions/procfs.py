"""Reading processes from /proc (Linux): who is in a session, since when, and signalling one
process without the risk of hitting another that was given its pid since."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    pgid: int
    sid: int
    # Clock ticks since boot: with the boot id, this tells one process from another that
    # got the same pid later.
    start_time: int

    @property
    def alive(self) -> bool:
        # A zombie has ended; it only waits for its parent (which, for an orphan in a container
        # whose init does not reap, may be never).
        return self.state not in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """The process *pid* as /proc says now, or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read()
    except OSError:
        return None
    return _parse_stat(pid, text)


def _parse_stat(pid: int, text: bytes) -> ProcStat | None:
    # The command name, in parentheses, may itself hold spaces and parentheses.
    fields = text[text.rfind(b")") + 2:].split()
    try:
        return ProcStat(pid, fields[0].decode(), int(fields[2]), int(fields[3]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def processes() -> Iterator[ProcStat]:
    """Every process visible in /proc."""
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                yield stat


def session_members(sid: int) -> list[ProcStat]:
    """The processes of session *sid* that have not ended (zombies left out)."""
    return [p for p in processes() if p.sid == sid and p.alive]


def environ_has(pid: int, entry: bytes) -> bool:
    """Whether the environment *pid* was started with holds *entry* (``NAME=value``)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return entry in file.read().split(b"\0")
    except OSError:
        return False


@functools.cache
def boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def signal_if_same(stat: ProcStat, signum: int) -> bool:
    """Send *signum* to the process *stat* describes, only if its pid still names that
    process (same start time); True if sent."""
    try:
        pidfd = os.pidfd_open(stat.pid)
    except OSError:
        return False
    try:
        # The pidfd now holds on to whichever process has the pid: check it is still ours.
        now = read_stat(stat.pid)
        if now is None or now.start_time != stat.start_time:
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(pidfd)
