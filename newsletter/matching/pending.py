"""The mark that stored papers may still wait for their topic matches, set before a fetch stores anything.

Why a module of its own: `fetch` sets it before parsing, and this module imports nothing heavy, so scikit-learn
(about 100 MiB) is loaded only for the matching, once the fetched documents are let go (issue 30).
"""

from __future__ import annotations

from datetime import datetime

from newsletter.storage.papers import PaperStore

PENDING_KEY = "matching_pending_since"
"""Set (to the fetch's time) before a fetch stores papers, removed once they are matched: while it is there, the
papers changed since that time may have no matches yet, and the next ``refresh_matches`` matches them too."""


def begin_storing(store: PaperStore, *, now: datetime) -> None:
    """Before papers are stored: remember that papers changed from ``now`` on wait for matching. An older mark,
    left by a fetch that stopped before its matching ended, is kept, so its papers are matched too."""
    if store.get_meta(PENDING_KEY) is None:
        store.set_meta(PENDING_KEY, now.isoformat())


def pending_since(store: PaperStore) -> datetime | None:
    """When the oldest fetch whose papers may still wait for matching began (None: nothing waits)."""
    value = store.get_meta(PENDING_KEY)
    return None if value is None else datetime.fromisoformat(value)


def end_pending(store: PaperStore) -> None:
    """Every paper the mark covered is matched."""
    store.delete_meta(PENDING_KEY)
