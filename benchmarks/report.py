"""Statistics, the results table in markdown, and RESULTS.md with the machine it ran on."""

from __future__ import annotations

import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PASS, FAIL = "PASS", "FAIL"


@dataclass(frozen=True)
class Stats:
    """Repeated measurements of one figure."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no measurement")
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


def ratio_stats(a: Stats, b: Stats) -> Stats:
    """Per-repetition ratios a[i] / b[i] (the sides ran alternately, so rep i pairs up)."""
    return Stats.of([x / y if y else float("inf") for x, y in zip(a.values, b.values, strict=True)])


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of *values*."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(max(1, math.ceil(pct / 100 * len(ordered))), len(ordered))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Target:
    """``value OP limit``; OP is ">=" or "<="."""

    op: str
    limit: float
    text: str

    def check(self, value: float) -> str:
        ok = value >= self.limit if self.op == ">=" else value <= self.limit
        return PASS if ok else FAIL


@dataclass(frozen=True)
class Row:
    case: str
    what: str
    unit: str
    stats: Stats | None = None  # None: the row reports an error instead
    target: Target | None = None
    note: str = ""  # shown in the target column when there is no target
    error: str = ""
    # For a ratio row: median(a) / median(b), the figure shown and compared with the target;
    # min and max are then those of the per-repetition ratios.
    ratio: float | None = None

    @property
    def headline(self) -> float:
        """The figure compared with the target: the median, or the ratio of the medians."""
        if self.ratio is not None:
            return self.ratio
        assert self.stats is not None
        return self.stats.median

    @property
    def verdict(self) -> str:
        if self.error:
            return FAIL if self.target is not None else "ERROR"
        if self.target is None or self.stats is None:
            return ""
        return self.target.check(self.headline)


def ratio_row(case: str, what: str, a: Stats, b: Stats, target: Target | None = None,
              note: str = "") -> Row:
    """A row for a / b: the ratio of the medians, min and max of the per-repetition ratios."""
    value = a.median / b.median if b.median else float("inf")
    return Row(case, what, "×", ratio_stats(a, b), target, note, ratio=value)


def error_row(case: str, what: str, error: str, target: Target | None = None) -> Row:
    return Row(case, what, "", None, target, error=error)


UNITLESS = ("", "tasks", "errors")  # counts: shown as bare numbers


def fmt(value: float, unit: str, with_unit: bool = True) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("×", "s"):
        text = f"{value:.2f}"
    elif unit == "%" or (unit in ("ms", "MB") and value < 100):
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    if not with_unit or unit in UNITLESS:
        return text
    return f"{text}×" if unit == "×" else f"{text} {unit}"


HEADER = ("| case | measurement | median | min | max | n | target | result |\n"
          "|---|---|---:|---:|---:|---:|---|---|")


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER]
    for row in rows:
        target = row.target.text if row.target is not None else row.note
        if row.error:
            lines.append(f"| {row.case} | {row.what} | {_cell(row.error)} | | | | {target} | "
                         f"{row.verdict} |")
            continue
        assert row.stats is not None
        s = row.stats
        lines.append(
            f"| {row.case} | {row.what} | {fmt(row.headline, row.unit)} | "
            f"{fmt(s.min, row.unit, False)} | {fmt(s.max, row.unit, False)} | {len(s.values)} | "
            f"{target} | {row.verdict} |"
        )
    return "\n".join(lines)


def _cell(text: str) -> str:
    return "ERROR: " + text.replace("|", "/").replace("\n", " ")[:300]


def tally(rows: Sequence[Row]) -> str:
    """'8 of 20 targets pass; FAIL in cases 1, 2, 4' (errors count as failures)."""
    passed = sum(1 for r in rows if r.verdict == PASS)
    failed = [r for r in rows if r.verdict in (FAIL, "ERROR")]
    cases = sorted({r.case.split()[0] for r in failed})
    return f"{passed} of {passed + len(failed)} targets pass" + (
        f"; FAIL in case{'s' if len(cases) > 1 else ''} {', '.join(cases)}" if failed else "")


# -- the machine --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by the whole machine and by this process and its children."""

    machine: float
    own: float
    wall: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        tick = os.sysconf("SC_CLK_TCK")
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
        busy = sum(fields[:3]) + sum(fields[5:8])
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return cls(busy / tick, own, time.monotonic())


def other_cores(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """Cores used on average by processes that are not ours (and not our children), between
    two snapshots: how much someone else's work may have disturbed the measurements."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    other = (after.machine - before.machine) - (after.own - before.own)
    return max(0.0, other / wall)


def wait_for_quiet(limit: float, max_wait: float, window: float = 2.0) -> bool:
    """Wait until other processes use less than *limit* cores for *window* seconds, at most
    *max_wait* seconds; return whether that happened."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        before = CpuSnapshot.take()
        time.sleep(window)
        if other_cores(before, CpuSnapshot.take()) < limit:
            return True
    return False



def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _run_text(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10,
                              cwd=REPO_ROOT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "not found (HTTP load from the Python keep-alive client)"
    first = _run_text(["wrk", "-v"]).splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def git_revision() -> str:
    rev = _run_text(["git", "rev-parse", "--short", "HEAD"])
    if not rev:
        return "unknown"
    dirty = _run_text(["git", "status", "--porcelain", "--untracked-files=no"])
    return rev + (" with uncommitted changes" if dirty else "")


@dataclass
class Environment:
    lines: list[str] = field(default_factory=list)

    @classmethod
    def describe(cls, workdir: Path) -> Environment:
        fs = _run_text(["df", "--output=fstype", str(workdir)]).splitlines()[-1:]
        return cls([
            f"- Machine: {os.cpu_count()} cores ({_cpu_model()}), {_memory_gib()} RAM, "
            f"{platform.system()} {platform.release()}",
            f"- Python {platform.python_version()} ({sys.implementation.name}), "
            f"SQLite {sqlite3.sqlite_version}",
            f"- PySide6-Essentials {_version('PySide6-Essentials')}, bottle {_version('bottle')}, "
            f"cheroot {_version('cheroot')}, huey {_version('huey')}",
            f"- Load tool: {wrk_version()}",
            f"- Taskdesk revision: {git_revision()}; databases in {workdir.parent} "
            f"({fs[0] if fs else 'unknown'} file system)",
        ])


def document(title: str, summary: Sequence[str], env: Environment, rows: Sequence[Row],
             notes: Sequence[str]) -> str:
    parts = [f"# {title}", "", *summary, "", *env.lines, "", table(rows), "",
             f"**{tally(rows)}.**", ""]
    if notes:
        parts += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(parts)
