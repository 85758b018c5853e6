"""The one clock and the one process name every stage uses, so tests can pass their own and logs agree."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; tests pass a controlled one."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    """``host:pid``: who holds a claim or a lease, in the ledger, the runs table and `status`."""
    return f"{socket.gethostname()}:{os.getpid()}"
