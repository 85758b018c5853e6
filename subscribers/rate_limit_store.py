"""Rate limits kept in the database, so they hold across restarts and across processes sharing it.

Each counted event is a row (kind, hashed key, time). ``allow`` inserts the event first and then counts the
window *in the same transaction*: on SQLite the insert takes the database's write lock, so concurrent
requests are counted one after another and the limit is exact. (On PostgreSQL two concurrent requests can
each miss the other's uncommitted row; the web app also serialises its own checks, so only several web
processes racing on one address could exceed a limit, by at most one per process.)
"""

from __future__ import annotations

import contextlib
import ipaddress
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from subscribers.addresses import address_hash, ip_hash, valid_email
from subscribers.errors import InvalidAddressError
from subscribers.schema import rate_events

Kind = Literal["confirmation", "subscribe-ip", "signin-account", "signin-ip"]
"""What is counted; the sign-in kinds count failed console sign-ins (``newsletter.usecases.operators``)."""

CONFIRMATIONS_PER_ADDRESS = 3
"""At most this many confirmation emails to one address…"""
CONFIRMATION_WINDOW = timedelta(days=7)
"""…within this window, whoever asks for them (double opt-in must not become a way to spam an address)."""
IP_WINDOW = timedelta(hours=1)
KEEP = timedelta(days=8)
"""Events older than the longest window are deleted by housekeeping (``prune``)."""


class RateLimits:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def allow(self, kind: Kind, key: str, *, limit: int, window: timedelta, now: datetime) -> bool:
        """Count one event for ``key`` unless ``limit`` events are already in the window; True if counted."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(rate_events.insert().values(kind=kind, key=key, created=now))
            count = connection.execute(
                sa.select(sa.func.count()).select_from(rate_events).where(
                    rate_events.c.kind == kind, rate_events.c.key == key, rate_events.c.created > now - window
                )
            ).scalar_one()
            if count > limit:
                transaction.rollback()
                return False
            transaction.commit()
            return True

    def prune(self, *, now: datetime) -> int:
        """Delete events older than the longest window (housekeeping; indexed by time). Returns how many.

        Not done on each request any more: at 300k rows the delete inside every subscribe's write
        transaction brought subscribe down to 3.6 requests a second.
        """
        with self.engine.begin() as connection:
            result = connection.execute(rate_events.delete().where(rate_events.c.created < now - KEEP))
        return int(getattr(result, "rowcount", 0) or 0)

    def count(self, kind: Kind, key: str, *, window: timedelta, now: datetime) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(rate_events).where(
                    rate_events.c.kind == kind, rate_events.c.key == key, rate_events.c.created > now - window
                )
            ).scalar_one())

    def allow_confirmation(self, email: str, *, now: datetime, limit: int = CONFIRMATIONS_PER_ADDRESS) -> bool:
        """May one more confirmation email go to this mailbox now? (Counts it when it may.)

        Counted per mailbox (``mailbox_key``), not per spelling: ``flood+0..11@example.com`` is one inbox.
        """
        return self.allow("confirmation", mailbox_key(email), limit=limit, window=CONFIRMATION_WINDOW, now=now)

    def allow_subscribe_from(self, ip: str, *, limit: int, now: datetime) -> bool:
        """May this client send one more subscribe request this hour? (Counts it when it may.)

        An IPv6 client is counted per /64 (``network_key``): one host is handed a whole /64 to pick from.
        """
        return self.allow("subscribe-ip", ip_hash(network_key(ip)), limit=limit, window=IP_WINDOW, now=now)


_GMAIL = frozenset({"gmail.com", "googlemail.com"})


def mailbox_key(email: str) -> str:
    """The rate-limit key of the mailbox an address reaches: its normal form (``valid_email``: the address
    email-validator delivers to, so fullwidth, decomposed and ``xn--`` spellings of one domain are one), lower
    case, ``+tag`` dropped, and for Gmail the dots of the local part ignored (``A.da+x@googlemail.com`` and
    ``ada@gmail.com`` are one inbox)."""
    with contextlib.suppress(InvalidAddressError):  # not an address anyone can be sent to: keyed as written
        email = valid_email(email)
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    return address_hash(f"{local}@{domain}")


def network_key(ip: str) -> str:
    """The unit an IP is counted in: an IPv4 address itself, an IPv6 address's /64 (IPv4-mapped: the IPv4)."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip.strip().lower()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
