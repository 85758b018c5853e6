"""`send --to ADDRESS [--subscriber EMAIL]`: one copy of an edition's email, for checking it by eye.

Works for any edition: one not built yet (computed as `send` would build it now, not stored), one being
sent, and one that went out long ago. For a stored edition the copy is a variant its readers really got:
the subscriber's own (``--subscriber``) or the one most readers got. A subscriber without a ledger row
(they joined later, or had nothing new) gets their selection computed from the edition as it is stored.

The ledger is never touched. The copy's links are made for subscriber id 0, which exists on no list, so
following them changes nobody's subscription.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.delivery.dkim import DkimSigner
from newsletter.delivery.message import message_template, sendable_message
from newsletter.delivery.sending import smtp_password
from newsletter.delivery.transports import send_single
from newsletter.editions.selection import group_by_variant
from newsletter.errors import DeliveryError
from newsletter.records.editions import Edition, Frequency
from newsletter.rendering.links import recipient_links, signer_from_settings
from newsletter.rendering.render import RenderEnvironment, render_variant
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger, StoredVariant
from newsletter.storage.papers import PaperStore
from newsletter.storage.variant_readers import readers_by_variant, variant_of
from newsletter.usecases.campaign import edition_for, plan, sender_domain
from newsletter.usecases.tldr_model import model_tldrs
from subscribers.addresses import valid_email
from subscribers.errors import NotFoundError
from subscribers.models import Subscriber
from subscribers.store import SubscriberStore


@dataclass(frozen=True, kw_only=True)
class SentCopy:
    edition: str
    whose: str
    """Whose email it is, in words: "the email of 6 readers", "ada@example.org's email"."""
    via: str


def _whose(readers: int) -> str:
    return f"the email of {readers} reader{'s' if readers != 1 else ''}"


def _computed_for(settings: Settings, edition: Edition, subscriber: Subscriber) -> StoredVariant | None:
    groups = group_by_variant(edition, [(subscriber.id, subscriber.topics)],
                              max_per_topic=settings.email.max_papers_per_topic)
    if not groups:
        return None
    selection = groups[0].selection
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings),
                             model_tldrs=model_tldrs(settings, (p.paper for s in selection.sections for p in s.papers)))
    return StoredVariant(edition.id or 0, variant.key, variant.subject, variant.html, variant.text, variant.nonce)


def choose_copy(settings: Settings, engine: Engine, *, frequency: Frequency, now: datetime, day: date | None,
                subscriber_email: str | None) -> tuple[Edition, StoredVariant, str]:
    """The edition, the variant to copy and whose email it is (see the module docstring)."""
    edition = edition_for(settings, PaperStore(engine), EditionStore(engine), frequency=frequency, now=now,
                          day=day, persist=False)
    if edition.is_empty:
        raise DeliveryError(f"{edition.slug}: no email to send a copy of ({edition.empty_reason})")
    subscriber: Subscriber | None = None
    if subscriber_email is not None:
        subscriber = SubscriberStore(engine).get_by_email(valid_email(subscriber_email))
        if subscriber is None:
            raise NotFoundError(f"no subscriber {subscriber_email!r}")
    readers = readers_by_variant(engine, edition.id) if edition.id else {}
    if subscriber is not None:
        key = variant_of(engine, edition.id, subscriber.id) if edition.id else None
        if key is not None:
            return edition, Ledger(engine).variant(edition.id or 0, key), f"{subscriber.email}'s email"
        computed = _computed_for(settings, edition, subscriber)
        if computed is None:
            raise DeliveryError(f"{edition.slug}: {subscriber.email} gets no email of it (nothing in their topics)")
        return edition, computed, f"{subscriber.email}'s email"
    if readers:
        key = max(readers, key=lambda k: (readers[k], k))
        return edition, Ledger(engine).variant(edition.id or 0, key), _whose(readers[key])
    planned = plan(settings, engine, frequency=frequency, now=now, day=day)
    if not planned.variants:
        raise DeliveryError(f"{edition.slug}: no email to send a copy of (no subscriber of its frequency gets one; "
                            "name one with --subscriber)")
    chosen = max(planned.variants, key=lambda v: v.readers)
    rendered = planned.rendered[chosen.key]
    return edition, StoredVariant(edition.id or 0, rendered.key, rendered.subject, rendered.html, rendered.text,
                                  rendered.nonce), _whose(chosen.readers)


def _envelope_address(address: str) -> str:
    """The address as an ASCII relay takes it (IDNA domain); a non-ASCII local part would need SMTPUTF8, which
    this sender does not use: one line saying so, not the SMTP library's traceback."""
    from email_validator import EmailNotValidError, validate_email

    try:
        ascii_email = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError as error:
        raise DeliveryError(f"{address}: {error}") from None
    if ascii_email is None:
        raise DeliveryError(f"{address}: an address with non-ASCII letters before the @ needs SMTPUTF8, which this "
                            "sender does not use; give an ASCII address to --to")
    return ascii_email


def send_copy(settings: Settings, engine: Engine, *, frequency: Frequency, to: str, now: datetime,
              day: date | None = None, subscriber_email: str | None = None) -> SentCopy:
    """Send the chosen copy to ``to`` over the configured relay; nothing is recorded."""
    address = valid_email(to)
    edition, variant, whose = choose_copy(settings, engine, frequency=frequency, now=now, day=day,
                                          subscriber_email=subscriber_email)
    template = message_template(settings, key=variant.key, subject=variant.subject, html=variant.html,
                                text=variant.text, nonce=variant.nonce, edition_slug=edition.slug,
                                frequency=edition.frequency)
    recipient = recipient_links(settings, signer_from_settings(settings), subscriber_id=0, email=address, name="",
                                edition_slug=edition.slug)
    raw = sendable_message(template, recipient, settings=settings, date=now,
                           message_id=f"<test-{variant.key[:16]}-{int(now.timestamp())}@{sender_domain(settings)}>")
    dkim = DkimSigner(settings.delivery.dkim) if settings.delivery.dkim else None
    message = dkim.sign(raw) if dkim is not None else raw
    via = asyncio.run(send_single(settings.delivery, sender=settings.newsletter.from_address,
                                  recipient=_envelope_address(address), message=message,
                                  password=smtp_password(settings)))
    return SentCopy(edition=edition.slug, whose=whose, via=via)
