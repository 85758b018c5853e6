"""One complete message (RFC 5322 bytes) for one recipient of a rendered variant.

multipart/alternative: the text part first, then the HTML part, both UTF-8. Headers: From, To, Subject,
Date, Message-ID, List-Id, List-Unsubscribe (the one-click link) and List-Unsubscribe-Post (RFC 8058).
``message_template`` + ``sendable_message`` are what `send` and `preview` use: the MIME built once per
variant with each reader spliced in (``newsletter.delivery.mime``). ``build_message_bytes`` is the straightforward
stdlib construction (an ``EmailMessage`` per reader), kept as the benchmarks' naive baseline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from urllib.parse import quote, urlsplit

from newsletter.config import Settings
from newsletter.delivery.mime import MessageTemplate, RecipientHeaders
from newsletter.rendering.links import Recipient
from newsletter.rendering.render import RenderedVariant, personal_values, placeholder_pattern, safe_url
from newsletter.sources.text import collapse_whitespace


def list_id(settings: Settings) -> str:
    """RFC 2919 List-Id: the newsletter's name and ``<slug>.<host of base_url>``."""
    host = urlsplit(settings.newsletter.base_url).hostname or "localhost"
    slug = re.sub(r"[^a-z0-9]+", "-", settings.newsletter.name.lower()).strip("-") or "newsletter"
    return f"{collapse_whitespace(settings.newsletter.name)} <{slug}.{host}>"


def _address(name: str, email: str) -> Address:
    username, _, domain = email.rpartition("@")
    return Address(display_name=collapse_whitespace(name), username=username, domain=domain)


def build_message_bytes(
    variant: RenderedVariant,
    recipient: Recipient,
    *,
    settings: Settings,
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """The message exactly as it is handed to the SMTP relay (CRLF line ends)."""
    html_part, text_part = variant.personalise(recipient)
    newsletter = settings.newsletter
    domain = newsletter.from_address.rpartition("@")[2]
    message = EmailMessage(policy=SMTP)
    message["From"] = _address(newsletter.name, newsletter.from_address)
    message["To"] = _address(recipient.name, recipient.email)
    message["Subject"] = collapse_whitespace(variant.subject)
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain=domain)
    message["List-Id"] = list_id(settings)
    message["List-Unsubscribe"] = f"<{safe_url(recipient.unsubscribe_url) or ''}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text_part, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html_part, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


def unsubscribe_mailto(settings: Settings, unsubscribe_url: str) -> str:
    """The mailto alternative of List-Unsubscribe, carrying the same signed token in its subject; sent to the
    [inbound] domain's unsubscribe address (read by `newsletter inbound`) when there is one."""
    token = unsubscribe_url.rstrip("/").rpartition("/")[2]
    inbound = settings.inbound
    address = settings.newsletter.from_address
    if inbound.domain:
        address = f"{inbound.unsubscribe_local_part}@{inbound.domain}"
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


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
