"""All database access for subscribers and the suppression list. Takes an engine; knows nothing of ``newsletter``.

Statuses and what moves between them (``docs/subscribers.md`` has the full table):

* ``subscribe`` (web form) → ``pending``, with the consent time and IP; ``confirm`` → ``active``;
* ``add``/``put`` (CLI, import: the operator vouches for consent) → ``active``, or ``pending`` when a
  confirmation is asked for;
* ``unsubscribe`` → ``unsubscribed`` (or one topic fewer); ``mark_bounced`` → ``bounced``;
  ``mark_complained`` → ``complained``: each also puts the address on the suppression list;
* ``delete_personal_data`` removes the row and keeps only the suppression entry (a hash).

The valid topic slugs are handed in (``topics=``) by the caller: this package never reads the newsletter's
configuration. Without them, topics are stored unchecked (the low-level ``add`` of tests and the demo).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from subscribers import changes
from subscribers.addresses import address_hash, normalise_email, valid_email
from subscribers.errors import (
    NotFoundError,
    StatusError,
    SubscribersError,
    SuppressedError,
)
from subscribers.models import (
    FREQUENCIES,
    STATUSES,
    Frequency,
    Source,
    Status,
    Subscriber,
    SubscribeResult,
    SuppressionReason,
)
from subscribers.schema import SOURCES, subscriber_events, subscribers, suppressions
from subscribers.store_reads import SubscriberReads, check_choice

__all__ = ["BLOCKING_REASONS", "SubscriberStore", "normalise_email"]

BLOCKING_REASONS: frozenset[str] = frozenset({"bounced", "complained", "deleted", "operator"})
"""Suppression reasons that stop even a double opt-in from the web form sending a confirmation email.
An address suppressed only because it unsubscribed may ask again: the confirmation is rate-limited and a
confirmed request is fresh consent, which lifts the entry."""

ConfirmOutcome = Literal["confirmed", "already-active", "not-pending"]


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (NUL included), lone surrogates, bidi overrides: nothing a name needs, and each breaks a
terminal, a CSV reader or an email header."""


def plain_name(name: str) -> str:
    """A reader's name as kept: whitespace runs collapsed to one space, then control characters dropped."""
    return " ".join(_CONTROL.sub("", " ".join(name.split())).split())


def _clean_name(name: str) -> str:
    name = plain_name(name)
    if len(name) > 200:
        raise SubscribersError(f"name longer than 200 characters: {name[:40]!r}…")
    return name


class SubscriberStore(SubscriberReads):
    """Every write to subscribers and the suppression list; the reads are ``SubscriberReads``."""

    # --- low-level writes -----------------------------------------------------------------------------------

    @staticmethod
    def _suppress(connection: Connection, email: str, reason: SuppressionReason, now: datetime) -> None:
        key = address_hash(email)
        updated = connection.execute(
            suppressions.update().where(suppressions.c.address_hash == key).values(reason=reason, created=now)
        )
        if not cast(Any, updated).rowcount:
            connection.execute(suppressions.insert().values(address_hash=key, reason=reason, created=now))

    @staticmethod
    def _unsuppress(connection: Connection, email: str) -> None:
        connection.execute(suppressions.delete().where(suppressions.c.address_hash == address_hash(email)))

    def suppress(self, email: str, *, reason: SuppressionReason = "operator", now: datetime) -> None:
        """Put an address on the suppression list (it need not be a subscriber); an active one is unsubscribed."""
        address = valid_email(email)
        with self.engine.begin() as connection:
            self._suppress(connection, address, reason, now)
            found = self._get_by_email(connection, address)
            if found is not None and found.status in ("active", "pending"):
                self._update(connection, found.id, status="unsubscribed", unsubscribed_at=now, updated=now)

    @staticmethod
    def _update(connection: Connection, subscriber_id: int, **values: Any) -> Subscriber:
        before = SubscriberStore._get(connection, subscriber_id) if changes.listening(connection) else None
        connection.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(**values))
        found = SubscriberStore._get(connection, subscriber_id)
        if found is None:  # pragma: no cover - updated inside the same transaction
            raise NotFoundError(f"subscriber {subscriber_id} vanished")
        if before is not None:
            changes.notify(connection, before, found)
        return found

    @staticmethod
    def _insert(connection: Connection, values: dict[str, Any]) -> Subscriber:
        result = connection.execute(subscribers.insert().values(values))
        new_id = int(cast(Sequence[int], result.inserted_primary_key)[0])
        found = SubscriberStore._get(connection, new_id)
        if found is None:  # pragma: no cover - inserted inside the same transaction
            raise NotFoundError(f"subscriber {new_id} vanished")
        if changes.listening(connection):
            changes.notify(connection, None, found)
        return found

    def add(
        self,
        email: str,
        *,
        now: datetime,
        name: str = "",
        topics: Sequence[str] = (),
        frequency: Frequency = "daily",
        status: Status = "active",
        source: Source = "cli",
        consent_ip: str | None = None,
        force: bool = False,
    ) -> Subscriber:
        """Insert a new subscriber; an address already on the list is an error, a suppressed one too unless
        ``force`` (which lifts its suppression entry)."""
        address = valid_email(email)
        check_choice(frequency, FREQUENCIES, "frequency")
        check_choice(status, STATUSES, "status")
        check_choice(source, SOURCES, "source")
        chosen = self.check_topics(topics)
        with self.engine.begin() as connection:
            if self._get_by_email(connection, address) is not None:
                raise SubscribersError(f"{address} is already on the list")
            suppressed = self._suppression(connection, address)
            if suppressed is not None:
                if not force:
                    raise SuppressedError(address, suppressed.reason)
                self._unsuppress(connection, address)
            return self._insert(connection, {
                "email": address,
                "name": _clean_name(name),
                "status": status,
                "topics": list(chosen),
                "frequency": frequency,
                "source": source,
                "consent_at": now,
                "consent_ip": consent_ip,
                "created": now,
                "updated": now,
            })

    def put(
        self,
        connection: Connection,
        email: str,
        *,
        now: datetime,
        name: str | None,
        topics: Sequence[str] | None,
        frequency: Frequency | None,
        pending: bool,
        source: Source,
        force: bool,
    ) -> tuple[Literal["added", "updated", "unchanged"], Subscriber]:
        """Insert or update one subscriber the operator vouches for (CLI add, import), in the caller's
        transaction. ``None`` leaves a stored value as it is (a new subscriber gets: no name, every topic,
        daily). Active unless ``pending``; an active subscriber is never moved back to pending, nor a pending one
        made active without ``force``. A suppressed
        address raises SuppressedError unless ``force``, which lifts the entry."""
        address = valid_email(email)
        topics = self.check_topics(topics) if topics else None
        frequency = self.check_frequency(frequency) if frequency is not None else None
        suppressed = self._suppression(connection, address)
        if suppressed is not None:
            if not force:
                raise SuppressedError(address, suppressed.reason)
            self._unsuppress(connection, address)
        existing = self._get_by_email(connection, address)
        if existing is None:
            status: Status = "pending" if pending else "active"
            return "added", self._insert(connection, {
                "email": address,
                "name": _clean_name(name or ""),
                "status": status,
                "topics": list(topics if topics else self.default_topics()),
                "frequency": frequency or "daily",
                "source": source,
                "consent_at": now,
                "created": now,
                "updated": now,
            })
        if existing.status in ("bounced", "complained", "unsubscribed") and not force:
            raise SuppressedError(address, existing.status)
        changes: dict[str, Any] = {}
        if name is not None and _clean_name(name) != existing.name:
            changes["name"] = _clean_name(name)
        if topics and tuple(topics) != existing.topics:
            changes["topics"] = list(topics)
        if frequency is not None and frequency != existing.frequency:
            changes["frequency"] = frequency
        wanted: Status = "active" if existing.status == "active" or not pending else "pending"
        if existing.status == "pending" and not force:
            wanted = "pending"  # a sign-up never confirmed: its consent is unproven, it stays pending
        if wanted != existing.status:
            changes.update(status=wanted, consent_at=now, consent_ip=None, source=source, unsubscribed_at=None)
        if not changes:
            return "unchanged", existing
        return "updated", self._update(connection, existing.id, updated=now, **changes)

    # --- the subscriber's own operations --------------------------------------------------------------------

    def subscribe(
        self, email: str, *, topics: Sequence[str], frequency: str, ip: str | None, now: datetime
    ) -> SubscribeResult:
        """A request from the web form: a new address is stored ``pending``, with the consent time and IP.

        Never changes a stored subscriber — active, pending or unsubscribed: the caller queues the request
        and its confirmation link applies it — and never touches a blocked address (``BLOCKING_REASONS``,
        bounced, complained). The caller answers the
        same whatever the outcome, so nobody learns whether an address is on the list.
        """
        address = valid_email(email)
        chosen = self.check_topics(topics, required=True)
        chosen_frequency = self.check_frequency(frequency)
        for _ in range(2):  # a concurrent insert of the same address: the second pass updates it
            try:
                with self.engine.begin() as connection:
                    return self._subscribe(connection, address, chosen, chosen_frequency, ip, now)
            except IntegrityError:
                continue
        raise SubscribersError(f"could not store the subscription of {address}")  # pragma: no cover

    def _subscribe(self, connection: Connection, address: str, topics: tuple[str, ...], frequency: Frequency,
                   ip: str | None, now: datetime) -> SubscribeResult:
        suppressed = self._suppression(connection, address)
        if suppressed is not None and suppressed.reason in BLOCKING_REASONS:
            return SubscribeResult(outcome="suppressed", subscriber=None)
        existing = self._get_by_email(connection, address)
        if existing is None:
            subscriber = self._insert(connection, {"email": address, "name": "", "status": "pending",
                                                   "source": "web", "created": now, "consent_at": now,
                                                   "consent_ip": ip, "topics": list(topics),
                                                   "frequency": frequency, "updated": now})
            return SubscribeResult(outcome="pending", subscriber=subscriber)
        # A stored reader is never changed by a form anyone can post: the request waits in the outbox, and
        # only its confirmation link (sent to the mailbox) applies it (``subscribers.requests``).
        if existing.status == "active":
            return SubscribeResult(outcome="already-active", subscriber=existing)
        if existing.status in ("bounced", "complained"):
            return SubscribeResult(outcome="suppressed", subscriber=None)
        return SubscribeResult(outcome="pending" if existing.status == "pending" else "unsubscribed",
                               subscriber=existing)

    def confirm(self, subscriber_id: int, *, ip: str | None, now: datetime) -> tuple[ConfirmOutcome, Subscriber]:
        """Double opt-in: ``pending`` → ``active``, recording when and from where. Idempotent for an active
        subscriber; any other status (unsubscribed since, bounced, complained) is ``not-pending``. A
        confirmed request is fresh consent: an "unsubscribed" suppression entry is lifted."""
        with self.engine.begin() as connection:
            subscriber = self._require(connection, subscriber_id)
            if subscriber.status == "active":
                return "already-active", subscriber
            suppressed = self._suppression(connection, subscriber.email)
            if subscriber.status != "pending" or (suppressed and suppressed.reason in BLOCKING_REASONS):
                return "not-pending", subscriber
            self._unsuppress(connection, subscriber.email)
            return "confirmed", self._update(connection, subscriber_id, status="active", confirmed_at=now,
                                             confirmed_ip=ip, unsubscribed_at=None, updated=now)

    def update_preferences(
        self, subscriber_id: int, *, topics: Sequence[str], frequency: str, now: datetime
    ) -> Subscriber:
        """New topics (in the order given) and frequency for an active or pending subscriber."""
        chosen = self.check_topics(topics, required=True)
        chosen_frequency = self.check_frequency(frequency)
        with self.engine.begin() as connection:
            subscriber = self._require(connection, subscriber_id)
            if subscriber.status not in ("active", "pending"):
                raise StatusError(f"{subscriber.email} is {subscriber.status}; preferences cannot be changed")
            if (chosen, chosen_frequency) == (subscriber.topics, subscriber.frequency):
                return subscriber
            return self._update(connection, subscriber_id, topics=list(chosen), frequency=chosen_frequency,
                                updated=now)

    def resubscribe(
        self, subscriber_id: int, *, topics: Sequence[str], frequency: str, ip: str | None, now: datetime
    ) -> Subscriber:
        """An unsubscribed reader comes back through their own manage link (it was emailed to them, so
        using it is consent from the mailbox owner): active again, the suppression entry lifted."""
        chosen = self.check_topics(topics, required=True)
        chosen_frequency = self.check_frequency(frequency)
        with self.engine.begin() as connection:
            subscriber = self._require(connection, subscriber_id)
            if subscriber.status == "active":
                return subscriber
            suppressed = self._suppression(connection, subscriber.email)
            if subscriber.status != "unsubscribed" or (suppressed and suppressed.reason in BLOCKING_REASONS):
                raise StatusError(f"{subscriber.email} is {subscriber.status}; it cannot subscribe again here")
            self._unsuppress(connection, subscriber.email)
            return self._update(connection, subscriber_id, status="active", topics=list(chosen),
                                frequency=chosen_frequency, consent_at=now, consent_ip=ip, confirmed_at=now,
                                confirmed_ip=ip, unsubscribed_at=None, updated=now)

    def unsubscribe(self, subscriber_id: int, *, now: datetime, topic: str | None = None) -> bool:
        """Stop all email (``topic`` None) or one topic; removing the last topic unsubscribes from all.

        Effective at once: the sender re-checks ``active_ids`` when it claims each message. Unsubscribing
        from all puts the address on the suppression list. Idempotent; returns whether anything changed.
        """
        if topic is not None:
            self.check_topics([topic])
        with self.engine.begin() as connection:
            subscriber = self._require(connection, subscriber_id)
            if topic is not None:
                if topic not in subscriber.topics:
                    return False
                remaining = [t for t in subscriber.topics if t != topic]
                if remaining:
                    self._update(connection, subscriber_id, topics=remaining, updated=now)
                    return True
            if subscriber.status not in ("active", "pending"):
                return False
            self._update(connection, subscriber_id, status="unsubscribed", unsubscribed_at=now, updated=now)
            self._suppress(connection, subscriber.email, "unsubscribed", now)
            return True

    def _mark(self, subscriber_id: int, status: Literal["bounced", "complained"], now: datetime,
              from_statuses: Sequence[str]) -> bool:
        with self.engine.begin() as connection:
            subscriber = self._get(connection, subscriber_id)
            if subscriber is None or subscriber.status not in from_statuses:
                return False
            self._update(connection, subscriber_id, status=status, updated=now)
            self._suppress(connection, subscriber.email, status, now)
            return True

    def mark_bounced(self, subscriber_id: int, *, now: datetime) -> bool:
        """A permanent recipient refusal (5.1.x): no more email to this address. Returns whether it changed."""
        return self._mark(subscriber_id, "bounced", now, ("active", "pending"))

    def mark_complained(self, subscriber_id: int, *, now: datetime) -> bool:
        """A spam complaint (feedback loop): never email this address again. Returns whether it changed."""
        return self._mark(subscriber_id, "complained", now, ("active", "pending", "unsubscribed", "bounced"))

    def replace_topics(self, changes: Mapping[int, Sequence[str]], *, now: datetime) -> int:
        """Store new topic lists as they are (a topic renamed or added in the configuration); returns the count."""
        with self.engine.begin() as connection:
            for subscriber_id, topics in changes.items():
                connection.execute(subscribers.update().where(subscribers.c.id == subscriber_id)
                                   .values(topics=list(topics), updated=now))
        return len(changes)

    def expire_pending(self, *, before: datetime) -> int:
        """Delete requests never confirmed since ``before`` (their consent was never given, so nothing is
        kept, not even a suppression entry). Returns how many were deleted."""
        with self.engine.begin() as connection:
            result = connection.execute(
                subscribers.delete().where(subscribers.c.status == "pending", subscribers.c.updated < before)
            )
        return int(cast(Any, result).rowcount or 0)

    def delete_personal_data(self, subscriber_id: int, *, now: datetime,
                             connection: sa.Connection | None = None) -> Subscriber:
        """Erasure on request: the row goes; only a suppression entry (the address's hash) stays, so the
        address is never emailed or imported again. Returns what was deleted. Pass ``connection`` to erase in
        the caller's transaction (with the newsletter's own traces of the subscriber)."""
        if connection is None:
            with self.engine.begin() as own:
                return self.delete_personal_data(subscriber_id, now=now, connection=own)
        subscriber = self._require(connection, subscriber_id)
        self._suppress(connection, subscriber.email, "deleted", now)
        connection.execute(subscriber_events.delete().where(subscriber_events.c.subscriber_id == subscriber_id))
        connection.execute(subscribers.delete().where(subscribers.c.id == subscriber_id))
        return subscriber
