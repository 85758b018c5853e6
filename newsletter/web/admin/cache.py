"""Short-lived memory of expensive console reads: the overview and settled editions' delivery counts.

Why: after a year the ledger holds millions of rows, and an edition's counts or the overview's charts cost
tens to hundreds of milliseconds to compute; an operator (or sixteen tabs) reloading the page should not pay
that each time. A value is kept for ``seconds`` and computed by one request at a time (the others wait for
it rather than computing it again). Each console process has its own memory; docs/admin.md says how old
what the pages show can be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T], *, keep: Callable[[T], bool] = lambda _: True) -> T:
        """The value for ``key`` if computed less than ``seconds`` ago, else ``compute()`` (remembered when
        ``keep`` says so)."""
        found = self._values.get(key)
        if found is not None and self.clock() - found[0] < self.seconds:
            return found[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._values.get(key)
            if found is not None and self.clock() - found[0] < self.seconds:
                return found[1]
            value = compute()
            if keep(value):
                self._values[key] = (self.clock(), value)
            else:
                self._values.pop(key, None)
            return value

    def forget(self) -> None:
        self._values.clear()
