"""What a sign-up request does, the same for every address, and what confirming one applies.

Why each rule (issue 17):

* The form never changes a stored reader (``SubscriberStore.subscribe``); it queues a *request* in the
  outbox, and only the link emailed for that request applies it (``subscribers.requests``). A stranger
  could otherwise turn an unsubscribed reader back to pending with their own topics and IP.
* The confirmation cap counts per mailbox (``mailbox_key``: ``+tag`` and Gmail dots ignored), so
  ``flood+N@`` variants share one quota; a request repeated with the same choices re-sends the same email
  (at most ``RESENDS`` times, an hour apart) instead of using up the quota, so a stranger repeating a
  request cannot lock the owner out for a week.
* The same statements run whatever the address — new, pending, active, unsubscribed or suppressed — and
  no email is sent inside the request, so the answer's timing tells nothing about the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from newsletter.storage.outbox import ConfirmationOutbox, OutboxItem
from subscribers.errors import NotFoundError
from subscribers.models import Frequency, Subscriber
from subscribers.rate_limit_store import CONFIRMATION_WINDOW, RateLimits, mailbox_key
from subscribers.requests import confirm_request
from subscribers.store import ConfirmOutcome, SubscriberStore
from subscribers.tokens import MAX_AGE

RESEND_AFTER = timedelta(hours=1)
"""A repeated identical request re-sends its email only if the last one went out this long ago…"""
RESENDS = 3
"""…and one request's email goes out at most this many times."""
REQUEST_AGE = MAX_AGE["request"] or timedelta(days=3)


class SignUps:
    def __init__(self, store: SubscriberStore, outbox: ConfirmationOutbox, limits: RateLimits) -> None:
        self.store = store
        self.outbox = outbox
        self.limits = limits

    def accept(self, email: str, *, topics: Sequence[str], frequency: Frequency, ip: str | None,
               now: datetime) -> str:
        """Store a new address as pending and queue the request's confirmation; returns what happened
        (for logs and tests only: the web page is the same for every outcome)."""
        result = self.store.subscribe(email, topics=topics, frequency=frequency, ip=ip, now=now)
        subscriber = result.subscriber
        key = mailbox_key(email)
        if subscriber is None:  # blocked: the same reads and one write as any request, nothing to send
            self.outbox.same_request(subscriber_id=0, topics=topics, frequency=frequency, since=now - REQUEST_AGE)
            self.limits.count("confirmation", key, window=CONFIRMATION_WINDOW, now=now)
            self.outbox.add(subscriber_id=0, email="", mailbox="", topics=topics, frequency=frequency,
                            consent_ip=None, now=now, state="skipped", reason="address suppressed")
            return "suppressed"
        same = self.outbox.same_request(subscriber_id=subscriber.id, topics=topics, frequency=frequency,
                                        since=now - REQUEST_AGE)
        if same is not None:
            return self._repeat(same, now=now)
        allowed = self.limits.allow_confirmation(email, now=now)
        self.outbox.add(subscriber_id=subscriber.id, email=subscriber.email, mailbox=key, topics=topics,
                        frequency=frequency, consent_ip=ip, now=now, state="queued" if allowed else "skipped",
                        reason=None if allowed else "over the mailbox's confirmation quota")
        return "queued" if allowed else "over-quota"

    def _repeat(self, same: OutboxItem, *, now: datetime) -> str:
        last = same.sent_at or same.created
        if same.state == "sent" and same.attempts < RESENDS and now - last >= RESEND_AFTER:
            self.outbox.resend(same.id, now=now)
            return "resent"
        return "repeated"

    def confirm(self, item: OutboxItem, *, ip: str | None, now: datetime) -> tuple[ConfirmOutcome, Subscriber]:
        """Apply the request the link was sent for (once; a second click shows the same result)."""
        if item.state == "confirmed":  # used already: shown again while active, never re-applied
            subscriber = self.store.get(item.subscriber_id)
            if subscriber is None:
                raise NotFoundError(f"no subscriber {item.subscriber_id}")
            return ("already-active" if subscriber.status == "active" else "not-pending"), subscriber
        outcome, subscriber = confirm_request(self.store, item.subscriber_id, topics=item.topics,
                                              frequency=item.frequency, requested_at=item.created,
                                              requested_ip=item.consent_ip, ip=ip, now=now)
        if outcome != "not-pending":
            self.outbox.mark_confirmed(item.id, now=now)
        return outcome, subscriber
