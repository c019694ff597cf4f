"""How background threads wait: a Waiter returns after a timeout, or as soon as it is woken.

The scheduler and retention threads wait through one, injected, so that tests replace it with
simulated time (a wait that advances a fake clock) and never sleep.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Waiter(Protocol):
    """``wait`` returns after *timeout* seconds or as soon as ``wake`` is called (a wake
    before the wait makes the next wait return at once)."""

    def wait(self, timeout: float) -> None: ...

    def wake(self) -> None: ...


class EventWaiter:
    """The real one: a threading.Event."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def wake(self) -> None:
        self._event.set()
