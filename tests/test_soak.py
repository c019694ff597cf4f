"""The soak of scripts/soak.py in a very short mode, so that the script cannot rot.

``make soak`` runs it for ten minutes; here it runs for fifteen seconds (the restart halfway
included) and must pass every check it makes. The script runs in its own process group, so
that whatever happens its children (the program, the clients, the probe) go with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.proc_helpers import REPO_ROOT, child_env

SOAK = REPO_ROOT / "scripts" / "soak.py"
TIMEOUT = 300.0  # the run takes about 20 s; its own bounds (starts, stops, drain) are shorter

EXPECTED_CHECKS = {
    "no request failed outside the restart",
    "/health never silent over 1 s outside the restart",
    "both stops exited 0",
    "queue emptied after the load",
    "every accepted task completed exactly once",
    "no delayed task started before its time",
    "the 2-second schedule fired once per due time, each task run once",
    "no task beyond the accepted ones and the schedule's (at most one per unknown POST)",
    "no ERROR or traceback in the logs",
    "memory (VmRSS) flat in run 1",
    "open fds flat in run 1",
    "memory (VmRSS) flat in run 2",
    "open fds flat in run 2",
}


def kill_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def run_soak(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SOAK), *args],
        cwd=REPO_ROOT, env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the script stops its children itself and prints what it saw.
        kill_group(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        raise AssertionError(
            f"the soak did not finish in {TIMEOUT:.0f} s:\n{out}\n{err}"
        ) from None
    finally:
        # Whatever happened, nothing of the group (script, program, clients) outlives the test.
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_short_soak_with_a_restart_passes_every_check(tmp_path: Path) -> None:
    data = tmp_path / "soak"
    result = run_soak("--minutes", "0.25", "--clients", "3", "--db", str(data))
    summary = result.stdout
    assert result.returncode == 0, f"{summary}\n{result.stderr}"
    assert "All checks passed." in summary, summary

    checks = dict(re.findall(r"^\| (.+?) \| (PASS|FAIL) \|", summary, re.MULTILINE))
    assert set(checks) == EXPECTED_CHECKS, summary
    assert set(checks.values()) == {"PASS"}, summary

    # It really ran: tasks were accepted and completed, and the program was restarted.
    accepted = re.search(r"([\d,]+) tasks accepted", summary)
    assert accepted is not None and int(accepted[1].replace(",", "")) > 0, summary
    assert re.search(r"^- restart: [\d.]+ s from SIGTERM", summary, re.MULTILINE), summary
    assert (data / "run1.log").exists() and (data / "run2.log").exists()
    assert (data / "soak.db").exists()
