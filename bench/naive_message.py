"""The straightforward stdlib construction of one message (an ``EmailMessage`` per reader).

The benchmarks' naive baseline: `send` and `preview` build the MIME once per variant and splice each reader
in (``newsletter.delivery.message``); this is what that replaces, kept here so the speed-up stays measurable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from newsletter.config import Settings
from newsletter.delivery.message import list_id
from newsletter.records.text import collapse_whitespace
from newsletter.rendering.links import Recipient
from newsletter.rendering.render import RenderedVariant, safe_url


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


