"""Resident memory of a process, read from /proc (Linux), and waiting for it to settle."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.5
SETTLED_SAMPLES = 6  # settled: the last 6 samples (3 s) within TOLERANCE_MB of each other
TOLERANCE_MB = 1.0


def status_mb(pid: int, field: str) -> float:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, …) in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(f"{field} not in /proc/{pid}/status")


@dataclass(frozen=True)
class Memory:
    rss_mb: float  # VmRSS once settled
    peak_mb: float  # VmHWM at that moment: the most the process has held so far
    settle_seconds: float  # from the first sample until settled


def settled_rss(pid: int, timeout: float) -> Memory:
    """Sample VmRSS every 0.5 s until it stays within 1 MB for 3 s (or *timeout* passes)."""
    started = time.monotonic()
    samples: list[float] = []
    while True:
        samples.append(status_mb(pid, "VmRSS"))
        recent = samples[-SETTLED_SAMPLES:]
        settled = len(recent) == SETTLED_SAMPLES and max(recent) - min(recent) <= TOLERANCE_MB
        if settled or time.monotonic() - started > timeout:
            return Memory(samples[-1], status_mb(pid, "VmHWM"), time.monotonic() - started)
        time.sleep(SAMPLE_SECONDS)
