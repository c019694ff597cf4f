"""DatabaseStatus: the one guard every GUI-thread call into the service goes through, and what
the window knows of the database's health.

Why a guard: in PySide6 an exception that leaves a slot (or a model method Qt calls, such as
``fetchMore``) is printed to stderr and the rest of the slot's work is lost, so a full disk or a
locked database would show the user nothing. ``call(what, operation)`` runs the operation and
turns whatever it raises into a ``Failed`` value, the way service/api.py turns it into an HTTP
status: ``StorageUnavailableError`` (503: disk full, locked past the busy timeout, read-only,
I/O error), ``DatabaseDamagedError`` (500 naming the damage), a ``ServiceError`` (the request
was refused, a 4xx: not a fault) or anything else (500 "internal error": a bug). The caller
decides what a failure means for its own work: a refresh keeps the rows it has and tries again
at the next tick; an action the user took tells the user.

What the status bar shows (``problem``; ``problem_changed`` when it changes), first found of:
1. the store's ``damage``: once found the store never writes to the file again in this run, so
   it stays shown;
2. the last failure of a guarded call, until a guarded call succeeds again;
3. the store's ``problem``, set by whichever thread (an API request, a worker, the window) met a
   fault and cleared by the next write that succeeds — so a full disk stays shown while reads
   go on working, and a 503 the API gave is shown too. The window re-reads it every second.

Threads: GUI thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from PySide6.QtCore import QObject, Signal

from service.errors import ServiceError
from service.task_service import TaskService
from storage import DatabaseDamagedError, StorageUnavailableError

log = logging.getLogger("taskdesk.gui")

T = TypeVar("T")


class FaultKind(Enum):
    UNAVAILABLE = "unavailable"  # the API's 503: the same operation can succeed later
    DAMAGED = "damaged"  # the API's 500 naming the damage: restore from a backup
    REFUSED = "refused"  # a ServiceError, the API's 4xx: not a database fault
    INTERNAL = "internal"  # the API's 500 "internal server error": a bug


@dataclass(frozen=True, slots=True)
class Failed:
    """What a guarded call came to instead of its result."""

    what: str  # the operation, as a verb phrase: "retry task 1a2b3c4d"
    kind: FaultKind
    cause: str

    @property
    def nothing_changed(self) -> bool:
        # The store's contract: a write that raises committed nothing of itself. A bug may
        # have struck after the write, so then we cannot say.
        return self.kind is not FaultKind.INTERNAL

    def explain(self) -> str:
        """For the user who asked for the operation: what failed, why, and what it left."""
        text = f"Could not {self.what}: {self.cause}"
        match self.kind:
            case FaultKind.UNAVAILABLE:
                return (text + "\n\nNothing was changed. Try again once the database can be "
                        "used again.")
            case FaultKind.DAMAGED:
                return (text + "\n\nNothing was changed. Taskdesk writes nothing more to a "
                        "damaged database: restore it from a backup and start Taskdesk again.")
            case FaultKind.REFUSED:
                return text + "\n\nNothing was changed."
            case FaultKind.INTERNAL:
                return text + "\n\nCheck the task list to see what was done."


def _classify(exc: Exception) -> tuple[FaultKind, str]:
    if isinstance(exc, StorageUnavailableError):
        return FaultKind.UNAVAILABLE, str(exc)
    if isinstance(exc, DatabaseDamagedError):
        return FaultKind.DAMAGED, str(exc)
    if isinstance(exc, ServiceError):
        return FaultKind.REFUSED, str(exc)
    return FaultKind.INTERNAL, f"internal error ({type(exc).__name__}: {exc})"


def _indicator(kind: FaultKind, cause: str) -> str:
    headline = {FaultKind.DAMAGED: "Database damaged", FaultKind.INTERNAL: "Internal error"}
    return f"⚠ {headline.get(kind, 'Database unavailable')}: {cause}"


class DatabaseStatus(QObject):
    problem_changed = Signal(object)  # str | None: the status bar's text, None when all is well

    def __init__(self, service: TaskService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._service = service
        self._failure: str | None = None  # the last guarded call's failure, as shown
        self._failures = 0  # how many there were: a call that saw one inside it clears none
        self._depth = 0  # guarded calls in progress (a refresh can make Qt call fetchMore)
        self._problem: str | None = None  # as last emitted: the first check() shows any

    @property
    def problem(self) -> str | None:
        return self._problem

    def call(self, what: str, operation: Callable[[], T]) -> T | Failed:
        """*operation*'s result, or a Failed saying what went wrong; never raises Exception."""
        failures_before = self._failures
        self._depth += 1
        try:
            result = operation()
        except Exception as exc:
            kind, cause = _classify(exc)
            failed = Failed(what, kind, cause)
            if kind is not FaultKind.REFUSED:
                self._failures += 1
                self._note(failed, exc)
            return failed
        finally:
            self._depth -= 1
        if self._depth == 0 and self._failures == failures_before:
            self._failure = None
        self.check()
        return result

    def run(self, what: str, operation: Callable[[], object]) -> bool:
        """``call`` for an operation whose result is not needed: True when it succeeded."""
        return not isinstance(self.call(what, operation), Failed)

    def check(self) -> None:
        """Show what is wrong now (the store's state changes on other threads too)."""
        store = self._service.store
        if store.damage is not None:
            problem: str | None = _indicator(FaultKind.DAMAGED, store.damage)
        elif self._failure is not None:
            problem = self._failure
        elif store.problem is not None:
            problem = _indicator(FaultKind.UNAVAILABLE, store.problem)
        else:
            problem = None
        if problem != self._problem:
            self._problem = problem
            self.problem_changed.emit(problem)

    def _note(self, failed: Failed, exc: Exception) -> None:
        shown = _indicator(failed.kind, failed.cause)
        # Refreshes retry every tick while a fault lasts: log when what is wrong changes, not
        # ten times a second. Task data is logged only at DEBUG, as the API does.
        if shown != self._failure:
            if failed.kind is FaultKind.INTERNAL:
                log.error("could not %s: %s", failed.what, type(exc).__name__)
                log.debug("internal error details", exc_info=exc)
            elif failed.kind is FaultKind.DAMAGED:
                log.error("could not %s: %s", failed.what, failed.cause)
            else:
                log.warning("could not %s: %s", failed.what, failed.cause)
        self._failure = shown
        self.check()
