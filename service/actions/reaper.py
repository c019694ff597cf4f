"""ProcessReaper: ends the commands a Taskdesk that was killed -9 left running.

While a command runs, a small file in the reaper's folder records its process group: the
leader's pid (which is also the group and session id: commands start a session of their
own), its start time, the boot, the task, and the Taskdesk process that started it. The
runner removes the file once the group is gone. A file still there at start-up belongs to
a Taskdesk that died without cleaning up; ``sweep`` then kills what is left of that session.

Normally the watchdog process (watchdog.py) has killed the group when Taskdesk died; a sweep
finds what it could not (the watchdog was killed too, or never ran). A pid can have been given to
an unrelated process since, so a process is killed only if it is in the recorded session,
started no earlier than the recorded leader, and is either that leader (same start time) or
carries the task's ``TASKDESK_TASK_ID`` in the environment it was started with. Anything
else in the session is reported, never killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.actions import procfs

log = logging.getLogger("taskdesk.actions")

# A sweep kills, looks again (a process may have forked meanwhile) and gives up after this.
SWEEP_ROUNDS = 50
SWEEP_PAUSE = 0.01


@dataclass(frozen=True)
class _Record:
    pgid: int
    sid: int
    start_time: int
    boot_id: str
    task_id: str
    attempt: int
    owner_pid: int
    owner_start_time: int


class ProcessReaper:
    """Records running command groups in *folder* (created, mode 0700, at the first record:
    a run that starts no command leaves nothing behind) and ends those a killed Taskdesk left
    behind (``sweep``, at start-up)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._owner = procfs.read_stat(os.getpid())

    def add(self, pid: int, task_id: str, attempt: int,
            leader: procfs.ProcStat | None = None) -> Path | None:
        """Record the command whose leader is *pid* (*leader*: its /proc stat, if already
        read); the file to remove() once its group is gone, or None if it could not be
        written (logged: the command still runs)."""
        leader = leader or procfs.read_stat(pid)
        if leader is None or self._owner is None:
            return None  # no /proc to read it from: nothing a sweep could use
        record = _Record(leader.pgid, leader.sid, leader.start_time, procfs.boot_id(),
                         task_id, attempt, self._owner.pid, self._owner.start_time)
        path = self.folder / f"{pid}-{leader.start_time}.json"
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Written in place, without a rename: half a record (Taskdesk killed while
            # writing it) is dropped by the sweep, and the watchdog covers that moment.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(record.__dict__).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot record process group %d of task %s in %s: %s",
                        pid, task_id, self.folder, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return path

    def remove(self, record: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            record.unlink()

    def sweep(self) -> list[str]:
        """Kill (SIGKILL) what is left of groups recorded by a Taskdesk that is no longer
        running; remove their records. One line per group killed (or found and not killed)."""
        lines: list[str] = []
        try:
            paths = sorted(self.folder.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return lines  # nothing was ever recorded here
        except OSError as exc:
            log.warning("cannot look for commands left running in %s: %s", self.folder, exc)
            return lines
        for path in paths:
            if path.suffix != ".json":
                continue
            record = _read(path)
            if record is not None and record.boot_id == procfs.boot_id():
                if _owner_running(record):
                    continue  # another Taskdesk, still running, owns it
                lines.extend(_end_session(record))
            self.remove(path)
        return lines


def _read(path: Path) -> _Record | None:
    try:
        raw: Any = json.loads(path.read_text())
        return _Record(**raw)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable process record %s: %s", path, exc)
        return None


def _owner_running(record: _Record) -> bool:
    owner = procfs.read_stat(record.owner_pid)
    return owner is not None and owner.start_time == record.owner_start_time


def _end_session(record: _Record) -> list[str]:
    marker = f"TASKDESK_TASK_ID={record.task_id}".encode()

    def ours(p: procfs.ProcStat) -> bool:
        if p.pid == record.pgid and p.start_time == record.start_time:
            return True
        return bool(record.task_id) and procfs.environ_has(p.pid, marker)

    killed = 0
    strangers: list[procfs.ProcStat] = []
    for _ in range(SWEEP_ROUNDS):
        members = [p for p in procfs.session_members(record.sid)
                   if p.start_time >= record.start_time]
        targets = [p for p in members if ours(p)]
        strangers = [p for p in members if not ours(p)]
        if not targets:
            break
        killed += sum(procfs.signal_if_same(p, signal.SIGKILL) for p in targets)
        time.sleep(SWEEP_PAUSE)  # start-up only: let the kills land before looking again
    lines = []
    if killed:
        lines.append(f"killed leftover process group {record.pgid} of task {record.task_id}")
    if strangers:
        pids = ", ".join(str(p.pid) for p in strangers)
        lines.append(f"process group {record.pgid} of task {record.task_id}: process(es) "
                     f"{pids} still in its session were not killed: they could not be "
                     "identified as its own")
    return lines
