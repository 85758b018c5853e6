"""The per-recipient links of an email: manage, unsubscribe (signed tokens) and view in browser."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def signer_from_settings(settings: Settings) -> TokenSigner:
    variable = settings.newsletter.secret_env
    return TokenSigner(Keyring.parse(os.environ.get(variable), variable=variable))


def edition_url(settings: Settings, edition_slug: str) -> str:
    return f"{settings.newsletter.base_url.rstrip('/')}/archive/{quote(edition_slug)}"


def recipient_links(
    settings: Settings, signer: TokenSigner, *, subscriber_id: int, email: str, name: str, edition_slug: str
) -> Recipient:
    base = settings.newsletter.base_url.rstrip("/")
    return Recipient(
        subscriber_id=subscriber_id,
        email=email,
        name=name,
        manage_url=f"{base}/manage/{signer.sign('manage', subscriber_id)}",
        unsubscribe_url=f"{base}/unsubscribe/{signer.sign('unsubscribe', subscriber_id)}",
        view_url=edition_url(settings, edition_slug),
        feedback_url=f"{base}/feedback/{signer.sign('feedback', subscriber_id)}",
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
    return {
        "name": TEXT_ALLOWANCE,
        "greeting": TEXT_ALLOWANCE,
        "email": TEXT_ALLOWANCE,
        "manage_url": len(f"{base}/manage/".encode()) + token,
        "unsubscribe_url": len(f"{base}/unsubscribe/".encode()) + token,
        "feedback_url": len(f"{base}/feedback/".encode()) + token,
        "view_url": len(edition_url(settings, edition_slug).encode("utf-8")),
    }
