"""The per-recipient links of an email: manage, unsubscribe, feedback, the private feed (signed tokens) and view
in browser."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from newsletter.config import Settings
from subscribers.errors import KeyringError
from subscribers.tokens import Keyring, TokenSigner

TEXT_ALLOWANCE = 320
"""Bytes the size budget reserves for a name, a greeting or an address (RFC 5321's longest address)."""
LARGEST_SUBSCRIBER_ID = 10**19 - 1
"""A subscriber id of 19 digits (a signed 64-bit key), the longest a token can carry."""


@dataclass(frozen=True, kw_only=True)
class Recipient:
    """Everything that differs between two readers of the same variant."""

    subscriber_id: int
    email: str
    name: str
    manage_url: str
    unsubscribe_url: str
    view_url: str
    feedback_url: str = ""
    """Base of the "more/less like this" links (``newsletter.web.feedback``): paper, topic and vote follow."""
    feed_url: str = ""
    """The reader's private Atom feed, with a signed feed token (``feed_token``)."""


_FEED_SALT = "newsletter-feed:"
_FEED_TOKEN = re.compile(r"([A-Za-z0-9]+)\.([0-9]{1,19})\.([0-9a-f]{1,12})\.([A-Za-z0-9_-]{22})")
LATEST_ISSUE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""The latest issue time a feed token can carry (12 hex digits of milliseconds), for the size budget."""


@functools.lru_cache(maxsize=16)
def _feed_keyed(secret: str) -> hmac.HMAC:
    """The HMAC keyed with one secret and fed the salt; every message of a send copies it (issue 30)."""
    return hmac.new(secret.encode(), _FEED_SALT.encode(), hashlib.sha256)


def _feed_mac(secret: str, body: str) -> str:
    mac = _feed_keyed(secret).copy()
    mac.update(body.encode())
    return base64.urlsafe_b64encode(mac.digest()[:16]).decode("ascii").rstrip("=")


def feed_token(keyring: Keyring, subscriber_id: int, issued: datetime) -> str:
    """``<key id>.<subscriber id>.<issue time, ms, hex>.<HMAC>``: made without reading the database (one HMAC
    per message), verified by ``read_feed_token``; the feed refuses a token issued before the reader last
    rotated their feed address (``storage.reader_feeds``)."""
    body = f"{subscriber_id}.{int(issued.timestamp() * 1000):x}"
    return f"{keyring.current}.{body}.{_feed_mac(keyring.secret(), body)}"


def read_feed_token(keyring: Keyring, token: str) -> tuple[int, datetime] | None:
    """(subscriber id, issue time) of a feed token signed with any key of ``keyring``; None for any other text."""
    match = _FEED_TOKEN.fullmatch(token)
    if match is None or match.group(1) not in keyring.keys:
        return None
    key_id, subscriber, issued, mac = match.groups()
    if not hmac.compare_digest(mac, _feed_mac(keyring.keys[key_id], f"{subscriber}.{issued}")):
        return None
    return int(subscriber), datetime.fromtimestamp(int(issued, 16) / 1000, UTC)


def feed_url(settings: Settings, token: str) -> str:
    return f"{settings.newsletter.base_url.rstrip('/')}/feed/{token}.atom"


def signer_from_settings(settings: Settings) -> TokenSigner:
    variable = settings.newsletter.secret_env
    return TokenSigner(Keyring.parse(os.environ.get(variable), variable=variable))


def edition_url(settings: Settings, edition_slug: str) -> str:
    return _edition_url(settings.newsletter.base_url, edition_slug)


@functools.lru_cache(maxsize=64)
def _edition_url(base_url: str, edition_slug: str) -> str:
    """Every reader's web-view link of a send is the same: quoted once."""
    return f"{base_url.rstrip('/')}/archive/{quote(edition_slug)}"


def recipient_links(
    settings: Settings, signer: TokenSigner, *, subscriber_id: int, email: str, name: str, edition_slug: str,
    issued: datetime | None = None,
) -> Recipient:
    """A reader's links; ``issued``: when their feed token is made (now by default)."""
    base = settings.newsletter.base_url.rstrip("/")
    return Recipient(
        subscriber_id=subscriber_id,
        email=email,
        name=name,
        manage_url=f"{base}/manage/{signer.sign('manage', subscriber_id)}",
        unsubscribe_url=f"{base}/unsubscribe/{signer.sign('unsubscribe', subscriber_id)}",
        view_url=edition_url(settings, edition_slug),
        feedback_url=f"{base}/feedback/{signer.sign('feedback', subscriber_id)}",
        feed_url=feed_url(settings, feed_token(signer.keyring, subscriber_id, issued or datetime.now(UTC))),
    )


def personal_allowances(settings: Settings, edition_slug: str) -> dict[str, int]:
    """The most bytes each personal field can take in one email (see ``recipient_links``): links are a known
    prefix plus a token of the longest subscriber id signed with the current key id (a 16-character id when
    no key is set), so the size budget charges each link what it can really cost instead of a flat guess."""
    base = settings.newsletter.base_url.rstrip("/")
    try:
        key_id = Keyring.parse(os.environ.get(settings.newsletter.secret_env)).current
    except KeyringError:
        key_id = "k" * 16
    probe = TokenSigner(Keyring(keys={key_id: "p" * 16}, current=key_id))
    token = len(probe.sign("manage", LARGEST_SUBSCRIBER_ID).encode("utf-8"))
    feed = len(feed_url(settings, feed_token(probe.keyring, LARGEST_SUBSCRIBER_ID, LATEST_ISSUE)).encode("utf-8"))
    return {
        "name": TEXT_ALLOWANCE,
        "greeting": TEXT_ALLOWANCE,
        "email": TEXT_ALLOWANCE,
        "manage_url": len(f"{base}/manage/".encode()) + token,
        "unsubscribe_url": len(f"{base}/unsubscribe/".encode()) + token,
        "feedback_url": len(f"{base}/feedback/".encode()) + token,
        "view_url": len(edition_url(settings, edition_slug).encode("utf-8")),
        "feed_url": feed,
    }
