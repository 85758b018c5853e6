"""The per-recipient links of an email: manage, unsubscribe (signed tokens) and view in browser."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote

from newsletter.config import Settings
from subscribers.tokens import Keyring, TokenSigner


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
