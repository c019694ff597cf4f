"""Schedules: periodic tasks declared in the actions file, and the thread that fires them.

A schedule is a ``[schedules.<name>]`` table of the actions file::

    [schedules.nightly-backup]
    action = "archive"
    data = { folder = "~/Documents", output = "~/backups/docs.tar.gz" }
    cron = "30 2 * * *"     # or: every = 3600  (seconds)

``cron`` is a five-field cron expression in the local time zone, read by cronsim (the parser
Healthchecks uses, which follows Debian's cron, DST included: a time the clock skips in spring
fires when the clock jumps past it, and a time it repeats in autumn fires once; expressions
with ``*`` in the minute or hour field fire by elapsed time, every real hour). ``every = N``
fires at the multiples of N seconds since the Unix epoch (``every = 3600`` on the hour), so
every instance computes the same due times.

Each firing submits one task with the idempotency key ``schedule:<name>:<due time>``: two
instances sharing a database, or a restart in the middle of a firing, store it once. Firings
missed while Taskdesk was stopped (or the schedule paused) make one catch-up run, for the
latest missed time, not one per missed time (like anacron). A schedule that has never fired
starts with its first due time after Taskdesk started.

No Qt here: the Scheduler is a plain thread, with the wall clock and its way of waiting
injected so that tests drive it through simulated time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from service.errors import ConflictError, ServiceError, ValidationError
from service.scheduling import MAX_AHEAD_SECONDS
from service.task_service import TaskService
from service.waiting import EventWaiter, Waiter
from storage import ScheduleState, Task

log = logging.getLogger("taskdesk.schedules")

SCHEDULE_KEYS = ("action", "data", "cron", "every")
# TOML's bare-key characters: a name is also a URL path segment and part of an idempotency
# key (at most 255 characters with the due time), so it is kept to what needs no escaping.
NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
MIN_EVERY_SECONDS = 1.0
MAX_EVERY_SECONDS = float(MAX_AHEAD_SECONDS)
# The scheduler looks again at least this often, so that a wall clock set forward or back, or
# a schedule paused by another instance sharing the database, is noticed within it.
MAX_WAIT_SECONDS = 30.0
# After the database refused a firing, try again this much later.
RETRY_SECONDS = 5.0


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message is one line naming the file, the line of
    its table when known, and the problem."""


class UnknownScheduleError(ServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")
        self.name = name


@dataclass(frozen=True)
class Schedule:
    name: str
    action: str
    data: dict[str, Any]
    cron: str | None = None
    every: float | None = None
    # Where it was declared, for messages: the file, and the line of its table when known.
    source: str = ""
    line: int | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        at = f"{self.source} line {self.line}" if self.line is not None else self.source
        return f"{at}: [schedules.{self.name}]"

    @property
    def when(self) -> str:
        """How it repeats, in words for a person: ``cron 30 2 * * *`` or ``every 3600 s``."""
        return f"cron {self.cron}" if self.cron is not None else f"every {self.every:g} s"

    def next_after(self, moment: float, zone: tzinfo) -> float | None:
        """The first due time strictly after *moment*; None if there is none (a cron
        expression that matches no date for 50 years)."""
        if self.every is not None:
            return (math.floor(moment / self.every) + 1) * self.every
        assert self.cron is not None
        start = datetime.fromtimestamp(math.floor(moment), zone)
        try:
            found = CronSim(self.cron, start)
            due = next(found).timestamp()
            # Started inside the hour that autumn's clock change repeats, cronsim can answer
            # that hour's first pass, which is already behind: the next one is the answer.
            while due <= moment:
                due = next(found).timestamp()
        except StopIteration:
            return None
        return due

    def latest_at_or_before(self, moment: float, zone: tzinfo) -> float | None:
        """The last due time at or before *moment* (None if there is none)."""
        if self.every is not None:
            return math.floor(moment / self.every) * self.every
        assert self.cron is not None
        # cronsim's reverse iteration starts strictly before its start: one second later.
        start = datetime.fromtimestamp(math.floor(moment) + 1, zone)
        try:
            found = CronSim(self.cron, start, reverse=True)
            due = next(found).timestamp()
            while due > moment:  # the same, in the other direction
                due = next(found).timestamp()
        except StopIteration:
            return None
        return due


def due_text(due: float) -> str:
    """A due time as written in an idempotency key: whole seconds as an integer."""
    return str(int(due)) if float(due).is_integer() else repr(float(due))


def idempotency_key(name: str, due: float) -> str:
    return f"schedule:{name}:{due_text(due)}"


# -- reading the [schedules.*] tables ------------------------------------------------------


def parse_schedules(raw: Mapping[str, Any], source: str, text: str | None = None
                    ) -> list[Schedule]:
    """The schedules of an actions file: *raw* is its ``schedules`` table as TOML read it,
    *source* the file's path, *text* the file's text (to name the line of a schedule's table
    in errors). Raises ScheduleError (one line) for the first schedule that is not valid."""
    if not isinstance(raw, Mapping):
        raise ScheduleError(f"{source}: [schedules] must be a table of schedules, one "
                            "[schedules.<name>] table each")
    schedules = []
    for name, table in raw.items():
        line = _line_of(name, text) if text is not None else None
        where = f"{source} line {line}" if line is not None else source

        def refuse(problem: str, name: str = name, where: str = where) -> ScheduleError:
            return ScheduleError(f"{where}: [schedules.{name}] {problem}")

        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise refuse("the name must be 1 to 100 letters, digits, '-' or '_'")
        if not isinstance(table, Mapping):
            raise refuse("must be a table with action and cron or every")
        unknown = sorted(set(table) - set(SCHEDULE_KEYS))
        if unknown:
            raise refuse(f"unknown key(s) {', '.join(unknown)}; the keys are "
                         f"{', '.join(SCHEDULE_KEYS)}")
        action = table.get("action")
        if not isinstance(action, str) or not action.strip():
            raise refuse("action must be the name of an action (a string)")
        data = table.get("data", {})
        if not isinstance(data, Mapping):
            raise refuse("data must be a table (a JSON object)")
        try:
            data = json.loads(json.dumps(data, allow_nan=False))
        except (TypeError, ValueError):
            raise refuse("data must hold only JSON values (TOML dates and times, nan and inf "
                          "are not)") from None
        if ("cron" in table) == ("every" in table):
            raise refuse("give exactly one of cron (an expression) or every (seconds)")
        cron, every = table.get("cron"), table.get("every")
        if cron is not None:
            problem = _cron_problem(cron)
            if problem:
                raise refuse(problem)
        else:
            if isinstance(every, bool) or not isinstance(every, int | float) or not (
                    math.isfinite(every) and MIN_EVERY_SECONDS <= every <= MAX_EVERY_SECONDS):
                raise refuse(f"every must be a number of seconds from {MIN_EVERY_SECONDS:g} "
                             f"to {MAX_EVERY_SECONDS:g} (a year), not {every!r}")
            every = float(every)
        schedules.append(Schedule(name, action, data, cron, every, source, line))
    return schedules


def _cron_problem(cron: Any) -> str | None:
    if not isinstance(cron, str):
        return f"cron must be a cron expression (a string), not {cron!r}"
    if len(cron.split()) != 5:
        return (f"cron {cron!r} must have five fields: minute hour day-of-month month "
                "day-of-week")
    try:
        it = CronSim(cron, datetime.now(ZoneInfo("UTC")))
        next(it)
    except CronSimError as exc:
        return f"cron {cron!r}: {str(exc).lower()}"
    except StopIteration:
        return f"cron {cron!r} never matches a date"
    return None


def _line_of(name: Any, text: str) -> int | None:
    """The line of ``[schedules.<name>]`` in *text* (1-based), the name bare or quoted."""
    if not isinstance(name, str):
        return None
    quoted = re.escape(name)
    header = re.compile(
        rf"^\s*\[\s*schedules\s*\.\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*\]\s*(?:#.*)?$")
    for number, line in enumerate(text.splitlines(), 1):
        if header.match(line):
            return number
    return None


def check_actions(schedules: Sequence[Schedule], service: TaskService) -> None:
    """Refuse, at start-up, a schedule whose action is not in the action registry or whose
    data that action refuses: the one place where a schedule meets the registry. (Today the
    registry runs any unknown name with its default action, so only the data can fail.)"""
    for schedule in schedules:
        try:
            service.validate(schedule.action, schedule.data)
        except ValidationError as exc:
            raise ScheduleError(f"{schedule.where} {exc}") from None


# -- time zones -----------------------------------------------------------------------------


def local_zone() -> tzinfo:
    """The local time zone with its DST rules: the TZ variable's zone when it names one,
    else the system's (/etc/localtime). A fixed offset only where neither can be read, with a
    warning: cron times then do not follow DST changes."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        pass
    fixed = datetime.now().astimezone().tzinfo
    log.warning("cannot read the local time zone's rules; schedules use the fixed offset %s "
                "and do not follow daylight saving time changes", fixed)
    return fixed or ZoneInfo("UTC")


# -- the scheduler ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleStatus:
    """A schedule as GET /schedules and the window show it."""

    schedule: Schedule
    paused: bool
    next_due: float | None  # None while paused
    last_due: float | None
    last_task_id: str | None
    last_task: Task | None  # None when there is none, or it is no longer kept

    def to_dict(self) -> dict[str, Any]:
        s = self.schedule
        last = None
        if self.last_task_id is not None:
            last = {"id": self.last_task_id,
                    "status": self.last_task.status.value if self.last_task else None}
        return {"name": s.name, "action": s.action, "data": s.data, "cron": s.cron,
                "every": s.every, "paused": self.paused, "next_due": self.next_due,
                "last_due": self.last_due, "last_task": last}


class Scheduler:
    """Fires due schedules through ``TaskService.accept`` on a thread of its own.

    ``tick()`` does one round (fire what is due, say when the next one is), so tests can drive
    it with an injected *clock* and no thread; ``start()`` runs rounds on a thread, waiting
    between them with *waiter*. The state that matters between runs (paused, last firing) is
    in the store, so every instance sharing a database sees the same.
    """

    def __init__(
        self,
        service: TaskService,
        schedules: Sequence[Schedule],
        *,
        zone: tzinfo | None = None,
        clock: Callable[[], float] | None = None,
        waiter: Waiter | None = None,
    ) -> None:
        self.service = service
        self.store = service.store
        self.schedules = {s.name: s for s in schedules}
        self.zone = zone if zone is not None else local_zone()
        self.clock = clock if clock is not None else service.clock
        self.waiter: Waiter = waiter if waiter is not None else EventWaiter()
        # A schedule that never fired starts from here: nothing was missed before it existed.
        self.started_at = self.clock()
        # The latest due time fired by this instance, per schedule: keeps it from firing
        # again should recording the firing in the store have failed.
        self._fired: dict[str, float] = {}
        self._lock = threading.Lock()  # one firing at a time (the thread, run now)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- rounds ---------------------------------------------------------------------------

    def tick(self) -> float | None:
        """Fire every active schedule that is due (once each, for its latest due time at or
        before now); return the earliest next due time, None when nothing will be due."""
        with self._lock:
            now = self.clock()
            states = self.store.schedule_states()
            earliest: float | None = None
            for schedule in self.schedules.values():
                state = states.get(schedule.name)
                if state is not None and state.paused:
                    continue
                due = schedule.next_after(self._anchor(schedule, state), self.zone)
                if due is not None and due <= now:
                    missed = schedule.latest_at_or_before(now, self.zone)
                    self._fire(schedule, missed if missed is not None else due)
                    due = schedule.next_after(now, self.zone)
                if due is not None and (earliest is None or due < earliest):
                    earliest = due
            return earliest

    def _anchor(self, schedule: Schedule, state: ScheduleState | None) -> float:
        """The time after which the schedule's next due time is looked for."""
        anchor = self.started_at
        if state is not None and state.last_due is not None:
            anchor = state.last_due
        return max(anchor, self._fired.get(schedule.name, anchor))

    def _fire(self, schedule: Schedule, due: float) -> Task | None:
        key = idempotency_key(schedule.name, due)
        try:
            added = self.service.accept(schedule.action, schedule.data, idempotency_key=key)
        except (ValidationError, ConflictError) as exc:  # or stored with other data already
            # Retrying cannot help: the schedule or the action changed since start-up.
            log.error("schedule %s could not fire for %s: %s", schedule.name, due_text(due), exc)
            self._fired[schedule.name] = due
            return None
        self._fired[schedule.name] = due
        self.store.record_firing(schedule.name, due, added.task.id)
        if added.created:
            log.info("schedule %s fired for %s: task %s", schedule.name, due_text(due),
                     added.task.id)
        else:
            log.info("schedule %s for %s had fired already (task %s)", schedule.name,
                     due_text(due), added.task.id)
        return added.task

    # -- what the API and the window ask ----------------------------------------------------

    def names(self) -> list[str]:
        return list(self.schedules)

    def _schedule(self, name: str) -> Schedule:
        schedule = self.schedules.get(name)
        if schedule is None:
            raise UnknownScheduleError(name)
        return schedule

    def overview(self) -> list[ScheduleStatus]:
        states = self.store.schedule_states()
        return [self._status(s, states.get(s.name)) for s in self.schedules.values()]

    def status(self, name: str) -> ScheduleStatus:
        schedule = self._schedule(name)
        return self._status(schedule, self.store.schedule_states().get(name))

    def _status(self, schedule: Schedule, state: ScheduleState | None) -> ScheduleStatus:
        paused = state is not None and state.paused
        last_due = state.last_due if state is not None else None
        last_id = state.last_task_id if state is not None else None
        next_due = None if paused else schedule.next_after(self._anchor(schedule, state),
                                                           self.zone)
        last_task = self.store.get(last_id) if last_id is not None else None
        return ScheduleStatus(schedule, paused, next_due, last_due, last_id, last_task)

    def run_now(self, name: str) -> Task:
        """Fire *name* now, paused or not (a person asked for it); its task, new."""
        schedule = self._schedule(name)
        with self._lock:
            now = self.clock()
            task = self.service.submit(schedule.action, schedule.data)
            self.store.record_firing(schedule.name, now, task.id)
            self._fired[name] = max(now, self._fired.get(name, now))
        log.info("schedule %s run now: task %s", name, task.id)
        self.waiter.wake()
        return task

    def set_paused(self, name: str, paused: bool) -> ScheduleStatus:
        """Pause or resume *name*, for every instance, durably. Resuming one that missed a
        firing while paused runs it once, as a start does."""
        self._schedule(name)
        self.store.set_schedule_paused(name, paused)
        log.info("schedule %s %s", name, "paused" if paused else "resumed")
        self.waiter.wake()
        return self.status(name)

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._thread = threading.Thread(target=self._run, name="taskdesk-scheduler",
                                        daemon=True)
        self._thread.start()
        if self.schedules:
            log.info("%d schedule(s): %s", len(self.schedules), ", ".join(
                f"{s.name} ({s.when})" for s in self.schedules.values()))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                earliest = self.tick()
                timeout = MAX_WAIT_SECONDS
                if earliest is not None:
                    timeout = min(timeout, max(0.0, earliest - self.clock()))
            except Exception as exc:  # the database unavailable, say: try again soon
                log.warning("schedules: %s; trying again in %.0f s", exc, RETRY_SECONDS)
                timeout = RETRY_SECONDS
            if not self._stopping.is_set():
                self.waiter.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop firing; a firing under way completes first."""
        self._stopping.set()
        self.waiter.wake()
        if self._thread is not None:
            self._thread.join(timeout)
