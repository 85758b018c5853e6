"""Edition → ledger: who gets which variant, rendered once per variant, written before anything is sent.

``prepare`` is idempotent: a subscriber who already has a ledger row for the edition keeps it (and its
variant), so running `send` again only adds subscribers who were missing. Each stored variant keeps the
list of papers its email carries. A paper counts as received by a reader when the reader's row of a variant
carrying it is ``sent``, and as on its way while that row is pending, claimed, deferred or ambiguous: both
keep it out of the reader's other editions (``papers_already_had``). A reader whose message failed or was
suppressed can get those papers in a later edition.

``MessageFactory`` turns a ledger row into the bytes handed to SMTP: the stored variant's MIME template
(built once per variant) with the reader's name, links and headers spliced in.
"""

from __future__ import annotations

import hashlib
import hmac
import zoneinfo
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.delivery.dkim import DkimSigner
from newsletter.delivery.message import message_template, sendable_message
from newsletter.editions.build import build_edition, stored_edition
from newsletter.editions.preferences import feedback_boosts
from newsletter.editions.selection import group_by_variant
from newsletter.errors import ConfigError, DeliveryError
from newsletter.records.editions import Edition, Frequency, Prepared
from newsletter.rendering.links import recipient_links
from newsletter.rendering.render import RenderedVariant, RenderEnvironment, render_variant
from newsletter.storage.editions import EditionStore
from newsletter.storage.fills import FillStore
from newsletter.storage.install import install_id
from newsletter.storage.ledger import Ledger, NewDelivery, StoredVariant
from newsletter.storage.papers import PaperStore
from newsletter.usecases.tldr_model import edition_tldrs
from newsletter.usecases.tldrs import stored_tldrs
from subscribers.store import SubscriberStore
from subscribers.tokens import TokenSigner

_ROWS_PER_TRANSACTION = 1000


def message_id(secret: str, *, edition_id: int, subscriber_id: int, domain: str, install: str = "") -> str:
    """Deterministic, so a resend (by an operator, after an ambiguous delivery) is recognisably the same; the
    database's ``install`` id (``storage.install``) makes it unique to this database: a reset database or a
    second install sharing the key never repeats an old Message-ID (receivers drop repeats silently)."""
    key = f"{install}:{edition_id}:{subscriber_id}" if install else f"{edition_id}:{subscriber_id}"
    digest = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()
    return f"<{digest[:32]}@{domain}>"


def sender_domain(settings: Settings) -> str:
    return settings.newsletter.from_address.rpartition("@")[2]


def edition_for(settings: Settings, papers: PaperStore, editions: EditionStore, *, frequency: Frequency,
                now: datetime, day: date | None, persist: bool = True) -> Edition:
    """The stored edition, or a new one built from up-to-date matches (the matching step runs first).

    Matching loads scikit-learn (or torch), so it is imported and run only when an edition must be built:
    resuming a send, `send --to` and `edition show` of a stored edition stay light.
    """
    if stored_edition(settings, editions, frequency=frequency, now=now, day=day) is None:
        from newsletter.matching.refresh import refresh_matches

        refresh_matches(settings, papers)
    return build_edition(settings, papers, editions, frequency=frequency, now=now, day=day, persist=persist)


def papers_already_had(engine: Engine, edition: Edition, subscriber_ids: Collection[int]) -> dict[int, set[str]]:
    """Per subscriber, the edition's papers they already received, or may still receive in another edition.

    From the ledger: rows of other editions that were sent or are still on their way (``papers_carried``).
    From ``sent_papers``: what editions filled before migration 0011 recorded at fill time.
    """
    if not subscriber_ids:
        return {}
    had = EditionStore(engine).already_sent_many(subscriber_ids, paper_ids=list(edition.papers))
    carried = Ledger(engine).papers_carried(subscriber_ids, editions_after=edition.window_start,
                                            excluding=edition.id)
    wanted = set(edition.papers)
    for subscriber_id, papers in carried.items():
        had.setdefault(subscriber_id, set()).update(papers & wanted)
    return had


def prepare(
    settings: Settings,
    engine: Engine,
    *,
    frequency: Frequency,
    now: datetime,
    day: date | None,
    signer: TokenSigner,
    environment: RenderEnvironment | None = None,
    progress: Callable[[str], None] | None = None,
) -> Prepared:
    """Build (or load) the edition and fill its ledger; renders only variants not stored yet.

    The fill is recorded as begun before the edition is built and as finished after its last row
    (``FillStore``): a process killed in between leaves it open, and the retry job calls this again. The
    edition is published (archive, feeds) once its ledger is filled: an edition built and not sent (held for
    approval, looked at with `edition show`) is not public.
    """
    papers, editions, ledger = PaperStore(engine), EditionStore(engine), Ledger(engine)
    fill_day = day or now.astimezone(zoneinfo.ZoneInfo(settings.newsletter.timezone)).date()
    fills = FillStore(engine)
    fills.begin(frequency, fill_day, now=now)
    try:
        edition = edition_for(settings, papers, editions, frequency=frequency, now=now, day=day)
    except ConfigError:  # no such edition can be built (a date in the future): nothing to resume
        fills.forget(frequency, fill_day)
        raise
    store = SubscriberStore(engine)
    active = store.active_id_list(frequency=frequency)
    if edition.is_empty:
        fills.finish(frequency, fill_day, now=now)
        editions.publish(edition)
        return Prepared(edition, len(active), 0, 0, 0, 0, len(active))
    have_rows = ledger.subscribers_with_rows(edition.id)
    todo = store.get_many([i for i in active if i not in have_rows])  # none when resuming a filled ledger
    already = papers_already_had(engine, edition, [s.id for s in todo])
    groups = group_by_variant(
        edition,
        [(s.id, s.topics) for s in todo],
        max_per_topic=settings.email.max_papers_per_topic,
        already_sent=already,
        boosts=feedback_boosts(edition, papers, engine, [(s.id, s.topics) for s in todo],
                               matching=settings.matching),
    )
    environment = environment or RenderEnvironment(settings)
    tldrs = edition_tldrs(settings, edition) if groups else {}
    own_tldrs = stored_tldrs(engine, edition.papers.values()) if groups else {}
    stored_keys = ledger.variant_keys(edition.id)
    by_id = {s.id: s for s in todo}
    secret = signer.keyring.secret()
    domain = sender_domain(settings)
    install = install_id(engine)
    rendered = 0
    added = 0
    for number, group in enumerate(groups, start=1):
        if progress is not None:
            progress(f"variant {number}/{len(groups)}: {len(group.subscriber_ids)} readers")
        variant = render_variant(group.selection, settings=settings, environment=environment, model_tldrs=tldrs,
                                 stored_tldrs=own_tldrs)
        # saved even when stored: a variant stored by an older version lacks its list of papers
        ledger.save_variants(
            [StoredVariant(edition.id, variant.key, variant.subject, variant.html, variant.text, variant.nonce,
                           paper_ids=variant.paper_ids)],
            now=now,
        )
        if variant.key not in stored_keys:
            stored_keys.add(variant.key)
            rendered += 1
        for start in range(0, len(group.subscriber_ids), _ROWS_PER_TRANSACTION):
            chunk = group.subscriber_ids[start : start + _ROWS_PER_TRANSACTION]
            rows = [
                NewDelivery(
                    subscriber_id=sid,
                    email=by_id[sid].email,
                    name=by_id[sid].name,
                    variant_key=variant.key,
                    message_id=message_id(secret, edition_id=edition.id, subscriber_id=sid, domain=domain,
                                          install=install),
                )
                for sid in chunk
            ]
            added += ledger.add(edition.id, rows, now=now)
    fills.finish(frequency, fill_day, now=now)
    editions.publish(edition)  # in the archive and feeds from now on: it is being sent (as the editor left it)
    recipients = len(have_rows) + sum(len(g.subscriber_ids) for g in groups)
    return Prepared(
        edition=edition,
        subscribers=len(active),
        recipients=recipients,
        added=added,
        variants=len(ledger.variant_keys(edition.id)),
        rendered=rendered,
        nothing_new=len(todo) - sum(len(g.subscriber_ids) for g in groups),
    )


@dataclass(frozen=True)
class PlannedVariant:
    key: str
    subject: str
    readers: int
    html_bytes: int
    papers: int
    emails: tuple[str, ...] = ()
    """The addresses that would get this variant (`send --dry-run` shows who gets what)."""


@dataclass(frozen=True)
class Plan:
    """What a send would do now, computed without writing anything (`send --dry-run`, `send --to`)."""

    edition: Edition
    subscribers: int
    already_queued: int
    variants: tuple[PlannedVariant, ...]
    nothing_new: int
    rendered: dict[str, RenderedVariant]

    @property
    def recipients(self) -> int:
        return sum(v.readers for v in self.variants)


def plan(
    settings: Settings,
    engine: Engine,
    *,
    frequency: Frequency,
    now: datetime,
    day: date | None,
    environment: RenderEnvironment | None = None,
) -> Plan:
    """The edition (stored, or computed unstored), who would get which variant, each variant rendered."""
    papers, editions, ledger = PaperStore(engine), EditionStore(engine), Ledger(engine)
    edition = edition_for(settings, papers, editions, frequency=frequency, now=now, day=day, persist=False)
    subscribers = SubscriberStore(engine).list_active(frequency=frequency)
    have_rows = ledger.subscribers_with_rows(edition.id) if edition.id else set()
    todo = [s for s in subscribers if s.id not in have_rows]
    if edition.is_empty:
        return Plan(edition, len(subscribers), len(have_rows), (), len(todo), {})
    already = papers_already_had(engine, edition, [s.id for s in todo])
    groups = group_by_variant(edition, [(s.id, s.topics) for s in todo],
                              max_per_topic=settings.email.max_papers_per_topic, already_sent=already,
                              boosts=feedback_boosts(edition, papers, engine, [(s.id, s.topics) for s in todo],
                                                     matching=settings.matching))
    environment = environment or RenderEnvironment(settings)
    planned: list[PlannedVariant] = []
    rendered: dict[str, RenderedVariant] = {}
    email_of = {s.id: s.email for s in todo}
    tldrs = edition_tldrs(settings, edition) if groups else {}
    own_tldrs = stored_tldrs(engine, edition.papers.values(), save=False) if groups else {}
    for group in groups:
        variant = render_variant(group.selection, settings=settings, environment=environment, model_tldrs=tldrs,
                                 stored_tldrs=own_tldrs)
        rendered[variant.key] = variant
        planned.append(PlannedVariant(variant.key, variant.subject, len(group.subscriber_ids), variant.size_bytes,
                                      len(variant.paper_ids), tuple(email_of[i] for i in group.subscriber_ids)))
    reached = sum(len(g.subscriber_ids) for g in groups)
    return Plan(edition, len(subscribers), len(have_rows), tuple(planned), len(todo) - reached, rendered)


def sample_copy(
    settings: Settings, plan_: Plan, *, to: str, signer: TokenSigner, now: datetime
) -> tuple[PlannedVariant, bytes]:
    """The message of the variant with the most readers, addressed to ``to``; nothing is recorded.

    Its links are made for subscriber id 0, which exists on no list: following them changes nothing.
    """
    if not plan_.variants:
        raise DeliveryError(f"{plan_.edition.slug}: no email to send a copy of (nobody would get one)")
    chosen = max(plan_.variants, key=lambda v: v.readers)
    variant = plan_.rendered[chosen.key]
    template = message_template(settings, key=variant.key, subject=variant.subject, html=variant.html,
                                text=variant.text, nonce=variant.nonce, edition_slug=plan_.edition.slug,
                                frequency=plan_.edition.frequency)
    recipient = recipient_links(settings, signer, subscriber_id=0, email=to, name="",
                                edition_slug=plan_.edition.slug)
    domain = sender_domain(settings)
    raw = sendable_message(template, recipient, settings=settings, date=now,
                           message_id=f"<test-{variant.key[:16]}-{int(now.timestamp())}@{domain}>")
    dkim = DkimSigner(settings.delivery.dkim) if settings.delivery.dkim else None
    return chosen, dkim.sign(raw) if dkim is not None else raw
