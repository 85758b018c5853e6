"""Each variant of an edition's email as its readers see it, for the console's preview frames.

A sent (or sending) edition shows the variants stored in its ledger, which are exactly what went out; an
edition not sent yet shows what `send` would render now (``campaign.plan``, as `send --dry-run`). The
HTML is personalised for subscriber id 0, which exists on no list, like a test copy: its links change
nobody's subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.records.editions import Edition
from newsletter.rendering.links import recipient_links, signer_from_settings
from newsletter.rendering.render import RenderedVariant
from newsletter.storage.ledger import Ledger
from newsletter.storage.variant_readers import readers_by_variant
from newsletter.usecases.campaign import Plan, plan
from subscribers.errors import SubscribersError

PREVIEW_EMAIL = "reader@example.org"


@dataclass(frozen=True)
class VariantView:
    key: str
    subject: str
    readers: int
    sent: bool
    """True: stored in the ledger (what went out); False: what a send would render now."""


def plan_of(settings: Settings, engine: Engine, edition: Edition, *, now: datetime) -> Plan:
    """What a send of the edition would do now (every variant rendered): `send --dry-run`'s plan."""
    return plan(settings, engine, frequency=edition.frequency, now=now, day=edition.date)


def edition_variants(settings: Settings, engine: Engine, edition: Edition, *, now: datetime,
                     planned: Plan | None = None) -> list[VariantView]:
    """The edition's variants, most readers first (``planned``: a plan of it made already, for one not sent)."""
    readers = readers_by_variant(engine, edition.id) if edition.id else {}
    if readers:
        ledger = Ledger(engine)
        views = [VariantView(key, ledger.variant(edition.id, key).subject, count, True)
                 for key, count in readers.items()]
    else:
        planned = planned or plan_of(settings, engine, edition, now=now)
        views = [VariantView(v.key, v.subject, v.readers, False) for v in planned.variants]
    return sorted(views, key=lambda v: (-v.readers, v.key))


def variant_html(settings: Settings, engine: Engine, edition: Edition, key: str, *, now: datetime,
                 planned: Plan | None = None) -> str | None:
    """The variant's HTML personalised for the preview reader; None when the edition has no such variant."""
    rendered: RenderedVariant | None = None
    if edition.id and key in Ledger(engine).variant_keys(edition.id):
        stored = Ledger(engine).variant(edition.id, key)
        rendered = RenderedVariant(key=key, subject=stored.subject, html=stored.html, text=stored.text,
                                   paper_ids=(), size_bytes=0, nonce=stored.nonce)
    else:
        rendered = (planned or plan_of(settings, engine, edition, now=now)).rendered.get(key)
    if rendered is None:
        return None
    try:
        signer = signer_from_settings(settings)
    except SubscribersError as error:
        raise ConfigError(str(error)) from None
    recipient = recipient_links(settings, signer, subscriber_id=0, email=PREVIEW_EMAIL, name="",
                                edition_slug=edition.slug)
    return rendered.personalise(recipient)[0]
