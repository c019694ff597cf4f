"""Entry point: ``python -m benchmarks [--quick] [--cases 1,3] [--reps N] [--out PATH]``.

Runs the cases (see benchmarks/README.md), prints the results as a markdown table and writes
it, with the machine's cores, Python and library versions, to ``benchmarks/RESULTS.md`` (or
``--out``). The exit code is 1 if a case could not run; targets that are missed show FAIL in
the table and do not change the exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.big_db import BigDatabases
from benchmarks.cases import CASE_NAMES, CASES, Plan, say
from benchmarks.http_load import wrk_available
from benchmarks.report import (
    CpuSnapshot,
    Environment,
    Row,
    document,
    error_row,
    other_cores,
    table,
    tally,
    wait_for_quiet,
)

DEFAULT_OUT = Path(__file__).resolve().with_name("RESULTS.md")
BIG_DB_TIMEOUT = 300.0
# Cores used on average by processes other than the benchmark's own above which a case's
# figures are flagged as disturbed.
OTHER_LOAD_WARNING = 0.1
# Before each case, wait up to this long for 2 s in which other processes stay under that.
QUIET_MAX_WAIT = 45.0


def _cases(text: str) -> list[str]:
    """Case names ("1", "1b", "13", …), in the suite's order."""
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(CASES))
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"unknown case(s) {', '.join(unknown) or text!r}; the cases are "
            f"{', '.join(CASES)}")
    return [name for name in CASES if name in wanted]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Taskdesk's benchmarks against huey; loads go to 127.0.0.1 only.")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: smaller sizes, shorter loads, 1 repetition")
    parser.add_argument("--cases", type=_cases, default=list(CASES),
                        help="comma-separated cases (default: all: " + ",".join(CASES)
                        + "; 8-10 need PostgreSQL)")
    parser.add_argument("--reps", type=_positive,
                        help="repetitions of each measurement (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where to write the results (default: benchmarks/RESULTS.md)")
    parser.add_argument("--python-client", action="store_true",
                        help="HTTP load from the Python client even if wrk is installed")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace, workdir: Path) -> Plan:
    quick = bool(args.quick)
    big = BigDatabases(workdir, BIG_DB_TIMEOUT)
    return Plan(
        quick=quick,
        reps=args.reps or (1 if quick else 3),
        workdir=workdir,
        big=big,
        queue_tasks=1_000 if quick else 5_000,
        tutorial_tasks=40 if quick else 200,
        http_seconds=2.0 if quick else 10.0,
        big_rows=100_000 if quick else 1_000_000,
        window_seconds=3.0 if quick else 10.0,
        window_rate=1000.0,
        use_wrk=not args.python_client,
    )


def run(plan: Plan, numbers: list[str], notes: list[str]) -> list[Row]:
    """Run the cases; add to *notes* how busy other processes kept the machine meanwhile."""
    rows: list[Row] = []
    cores = os.cpu_count() or 1
    for number in numbers:
        say(f"case {number}: {CASE_NAMES[number]}")
        quiet = wait_for_quiet(OTHER_LOAD_WARNING, QUIET_MAX_WAIT)
        before = CpuSnapshot.take()
        try:
            rows += CASES[number](plan)
        except Exception as exc:  # one broken case must not lose the others' results
            say(f"case {number} failed: {type(exc).__name__}: {exc}")
            rows.append(error_row(CASE_NAMES[number], "could not run",
                                  f"{type(exc).__name__}: {exc}"))
        other = other_cores(before, CpuSnapshot.take())
        warning = " — **the figures of this case are disturbed**" if other > OTHER_LOAD_WARNING \
            else ""
        waited = "" if quiet else f" (the machine was not quiet after {QUIET_MAX_WAIT:.0f} s)"
        notes.append(f"Case {number}: other processes used {other:.2f} of the {cores} cores on "
                     f"average{warning}{waited}.")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%d %H:%M %Z")
    with tempfile.TemporaryDirectory(prefix="taskdesk-bench-") as tmp:
        workdir = Path(tmp)
        plan = make_plan(args, workdir)
        env = Environment.describe(workdir)
        load_notes: list[str] = []
        rows = run(plan, args.cases, load_notes)
        generated = dict(plan.big.generation_seconds)
    minutes = (time.monotonic() - started) / 60
    command = "python -m benchmarks" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    mode = (f"{'quick' if plan.quick else 'full'}: {plan.reps} repetition(s), cases "
            f"{','.join(args.cases)}")
    summary = [
        f"`{command}` ({mode}), started {started_at}, took {minutes:.1f} min.",
        "",
        "Medians of the repetitions; ratios are of the medians (their min and max are those of "
        "the per-repetition ratios, the sides having run alternately). What each row measures "
        "exactly: [README.md](README.md).",
    ]
    notes = [f"HTTP load: {'wrk' if plan.use_wrk and wrk_available() else 'Python client'}"
             " (the window case always uses the Python client, which can hold a rate)."]
    notes += [f"Generated {name} in {seconds:.1f} s." for name, seconds in generated.items()]
    notes += load_notes
    text = document("Taskdesk benchmark results", summary, env, rows, notes)
    print(table(rows))
    print(f"\n{tally(rows)}. Took {minutes:.1f} min.")
    args.out.write_text(text)
    say(f"wrote {args.out}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
