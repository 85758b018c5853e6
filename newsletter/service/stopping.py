"""A stop request set in one thread (``serve``'s signal handler) and awaited on event loops in others.

Why: a scheduled send runs ``deliver`` on its own event loop in a worker thread, and must stop when `serve`
is asked to. A ``threading.Event`` cannot wake an ``asyncio.Event``; following it meant polling it every
0.1 s on every loop. ``StopFlag.set`` instead hands each watching loop its wake-up with
``call_soon_threadsafe``: no polling, and the send sees the stop on its loop's next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class StopFlag(threading.Event):
    """A ``threading.Event`` whose ``set`` also sets the asyncio events that ``watching`` hands out."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._watchers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def set(self) -> None:
        with self._guard:
            super().set()
            watchers = list(self._watchers)
        for loop, event in watchers:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nothing there to wake
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def watching(self) -> Iterator[asyncio.Event]:
        """On a running loop: an asyncio.Event set when this flag is (at once if it already is)."""
        event = asyncio.Event()
        watcher = (asyncio.get_running_loop(), event)
        with self._guard:
            if self.is_set():
                event.set()
            self._watchers.append(watcher)
        try:
            yield event
        finally:
            with self._guard:
                self._watchers.remove(watcher)

    @property
    def watchers(self) -> int:
        """Loops waiting on this flag now (each ``watching`` block until it ends)."""
        return len(self._watchers)


@contextlib.contextmanager
def watching(stop: threading.Event) -> Iterator[asyncio.Event]:
    """``stop.watching()`` for a ``StopFlag``; for a plain ``threading.Event`` (a caller that never stops a
    run from another thread), an asyncio.Event set only if ``stop`` already is."""
    if isinstance(stop, StopFlag):
        with stop.watching() as event:
            yield event
        return
    event = asyncio.Event()
    if stop.is_set():
        event.set()
    yield event
