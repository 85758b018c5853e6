"""Confirming one sign-up request: the choices it carried, applied only by the link sent for it.

Why apart from ``SubscriberStore.confirm``: a confirmation link used to name the subscriber, so any later
form post (a stranger's, with their topics and IP) changed what an old link would activate. A request's
link now names the request; confirming it applies that request's topics and frequency — to a pending,
unsubscribed or active reader alike, since only the mailbox owner has the link — and records the request's
time and IP as the consent, and the confirming click's as the confirmation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from subscribers.models import Subscriber
from subscribers.store import BLOCKING_REASONS, ConfirmOutcome, SubscriberStore


def confirm_request(
    store: SubscriberStore,
    subscriber_id: int,
    *,
    topics: Sequence[str],
    frequency: str,
    requested_at: datetime,
    requested_ip: str | None,
    ip: str | None,
    now: datetime,
) -> tuple[ConfirmOutcome, Subscriber]:
    """Apply a confirmed request; ``not-pending`` for a bounced, complained or blocked address."""
    chosen = store.check_topics(topics, required=True)
    chosen_frequency = store.check_frequency(frequency)
    with store.engine.begin() as connection:
        subscriber = store._require(connection, subscriber_id)
        suppressed = store._suppression(connection, subscriber.email)
        if subscriber.status in ("bounced", "complained") or (suppressed and suppressed.reason in BLOCKING_REASONS):
            return "not-pending", subscriber
        was_active = subscriber.status == "active"
        store._unsuppress(connection, subscriber.email)
        after = store._update(connection, subscriber_id, status="active", topics=list(chosen),
                              frequency=chosen_frequency, consent_at=requested_at, consent_ip=requested_ip,
                              confirmed_at=now, confirmed_ip=ip, unsubscribed_at=None, source="web", updated=now)
        return ("already-active" if was_active else "confirmed"), after
