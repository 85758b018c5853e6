"""`serve`'s stop request reaches a send running on another thread's event loop without any polling."""

from __future__ import annotations

import asyncio
import threading

from newsletter.service.stopping import StopFlag, watching


def test_a_stop_set_in_another_thread_wakes_the_loop_through_call_soon_threadsafe() -> None:
    stop = StopFlag()
    seen: dict[str, object] = {}

    async def send() -> None:
        before = len(asyncio.all_tasks())
        with stop.watching() as stopped:
            seen["tasks added by watching"] = len(asyncio.all_tasks()) - before  # none: nothing polls
            seen["watchers"] = stop.watchers
            threading.Timer(0.05, stop.set).start()  # as serve's signal handler does, from another thread
            await stopped.wait()
        seen["watchers after"] = stop.watchers

    asyncio.run(asyncio.wait_for(send(), timeout=30))
    assert seen == {"tasks added by watching": 0, "watchers": 1, "watchers after": 0}


def test_a_stop_already_set_is_seen_at_once_and_a_plain_event_too() -> None:
    stop = StopFlag()
    stop.set()
    plain = threading.Event()
    plain.set()

    async def check() -> tuple[bool, bool, bool]:
        with stop.watching() as flagged, watching(plain) as evented, watching(threading.Event()) as unset:
            return flagged.is_set(), evented.is_set(), unset.is_set()

    assert asyncio.run(check()) == (True, True, False)


def test_setting_after_the_loop_closed_is_harmless() -> None:
    stop = StopFlag()
    loops: list[asyncio.AbstractEventLoop] = []

    async def leave_a_watcher() -> None:
        loops.append(asyncio.get_running_loop())
        stop._watchers.append((asyncio.get_running_loop(), asyncio.Event()))  # a loop that forgot to leave

    asyncio.run(leave_a_watcher())
    assert loops[0].is_closed()
    stop.set()
    assert stop.is_set()
