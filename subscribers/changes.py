"""A neutral way for a caller to hear of subscriber changes, inside the transaction that makes them.

This package knows nothing of webhooks (it never imports ``newsletter``). A caller that wants to act on a
change — the newsletter writes webhook events into its outbox — registers a ``Listener`` for an engine
with ``listen``. Every row ``SubscriberStore`` inserts or updates one at a time (``_insert``, ``_update``:
the CLI, the web pages, single mail-back reports) and every row the bulk writers change (the CSV import's
chunks in ``bulk_store.apply``, mail-back evidence in batches in ``EvidenceStore.apply_many``) calls the
listeners with the row before and after, on the same connection: what a listener writes commits or rolls back
with the change. Bulk topic renames (``replace_topics``) and erasure (``delete_personal_data``) are not
reported.

Listeners are keyed by the engine's connection pool (held weakly), so engines made from one another with
``execution_options`` share them and a disposed engine drops them. Without a listener nothing extra is read.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine

from subscribers.models import Subscriber

Listener = Callable[[Connection, Subscriber | None, Subscriber], None]
"""Called as ``listener(connection, before, after)``; ``before`` is None for a new subscriber."""

_listeners: weakref.WeakKeyDictionary[Any, list[Listener]] = weakref.WeakKeyDictionary()


def listen(engine: Engine, listener: Listener) -> None:
    """Call ``listener`` for every subscriber change made through ``engine`` (once per listener)."""
    registered = _listeners.setdefault(engine.pool, [])
    if listener not in registered:
        registered.append(listener)


def forget(engine: Engine) -> None:
    """Drop every listener of ``engine``."""
    _listeners.pop(engine.pool, None)


def listening(connection: Connection) -> bool:
    """Whether anyone listens to changes made on this connection (else the store skips reading ``before``)."""
    return bool(_listeners.get(connection.engine.pool))


def notify(connection: Connection, before: Subscriber | None, after: Subscriber) -> None:
    """Tell the listeners of the connection's engine about one change."""
    for listener in tuple(_listeners.get(connection.engine.pool, ())):
        listener(connection, before, after)
