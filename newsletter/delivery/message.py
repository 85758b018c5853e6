"""One complete message (RFC 5322 bytes) for one recipient of a rendered variant.

multipart/alternative: the text part first, then the HTML part, both UTF-8. Headers: From, To, Subject,
Date, Message-ID, List-Id, List-Unsubscribe (the one-click link) and List-Unsubscribe-Post (RFC 8058).
``message_template`` + ``sendable_message`` are what `send` and `preview` use: the MIME built once per
variant with each reader spliced in (``newsletter.delivery.mime``). The naive stdlib construction (an
``EmailMessage`` per reader) that this replaces is the benchmarks' baseline, in ``bench/naive_message.py``.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote, urlsplit

from newsletter.config import Settings
from newsletter.delivery.mime import MessageTemplate, RecipientHeaders
from newsletter.records.text import collapse_whitespace
from newsletter.rendering.links import Recipient
from newsletter.rendering.personal import personal_values, placeholder_pattern


def list_id(settings: Settings) -> str:
    """RFC 2919 List-Id: the newsletter's name and ``<slug>.<host of base_url>``."""
    host = urlsplit(settings.newsletter.base_url).hostname or "localhost"
    slug = re.sub(r"[^a-z0-9]+", "-", settings.newsletter.name.lower()).strip("-") or "newsletter"
    return f"{collapse_whitespace(settings.newsletter.name)} <{slug}.{host}>"


def unsubscribe_mailto(settings: Settings, unsubscribe_url: str) -> str:
    """The mailto alternative of List-Unsubscribe, carrying the same signed token in its subject; sent to the
    [inbound] domain's unsubscribe address (read by `newsletter inbound`) when there is one."""
    token = unsubscribe_url.rstrip("/").rpartition("/")[2]
    inbound = settings.inbound
    address = settings.newsletter.from_address
    if inbound.domain:
        address = f"{inbound.unsubscribe_local_part}@{inbound.domain}"
    if _QUOTE_SAFE.fullmatch(token):  # a signed token: nothing for quote() to encode (one per message of a send)
        return f"mailto:{address}?subject=unsubscribe%20{token}"
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


_QUOTE_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*", re.ASCII)
"""What ``quote`` leaves as it is (its always-safe characters and its default safe "/")."""


def feedback_id(settings: Settings, *, edition_slug: str, frequency: str) -> str:
    domain = settings.newsletter.from_address.rpartition("@")[2]
    return f"{edition_slug}:{frequency}:newsletter:{domain}"


def message_template(
    settings: Settings, *, key: str, subject: str, html: str, text: str, nonce: str, edition_slug: str,
    frequency: str,
) -> MessageTemplate:
    """The MIME template of one variant: what `send` builds once and splices every reader into."""
    return MessageTemplate(
        boundary_seed=key,
        from_name=settings.newsletter.name,
        from_address=settings.newsletter.from_address,
        subject=subject,
        html_document=html,
        text_document=text,
        placeholder=placeholder_pattern(nonce),
        list_id=list_id(settings),
        feedback_id=feedback_id(settings, edition_slug=edition_slug, frequency=frequency),
    )


def sendable_message(
    template: MessageTemplate,
    recipient: Recipient,
    *,
    settings: Settings,
    message_id: str,
    date: datetime,
) -> bytes:
    """One reader's message, byte for byte what `send` hands to the relay (before any DKIM signature)."""
    values = personal_values(recipient)
    headers = RecipientHeaders(
        to_email=recipient.email,
        to_name=recipient.name,
        message_id=message_id,
        date=date,
        list_unsubscribe=[values["unsubscribe_url"], unsubscribe_mailto(settings, values["unsubscribe_url"])],
    )
    return template.render(headers, values)
