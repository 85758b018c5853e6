"""`newsletter preview`: one reader's email for an edition, written to files exactly as it would be sent.

The edition is loaded when a send already built it; otherwise it is computed as it would be built now and
not stored, so a preview never freezes an edition ahead of its send. The reader is a subscriber from the
list (whose earlier papers are left out, as in a send) or a stand-in with the given topics (subscriber id
0, a placeholder address). Nothing is recorded: no ledger row, no papers marked as sent. The .eml is built
by the same code as a sent message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from newsletter.config import Settings
from newsletter.delivery.message import message_template, sendable_message
from newsletter.editions.selection import select
from newsletter.errors import ConfigError, TopicError
from newsletter.records.editions import Edition, Frequency
from newsletter.rendering.links import recipient_links, signer_from_settings
from newsletter.rendering.render import RenderEnvironment, render_variant
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.usecases.campaign import edition_for, papers_already_had
from newsletter.usecases.tldr_model import model_tldrs
from newsletter.usecases.tldrs import stored_tldrs
from subscribers.errors import SubscribersError
from subscribers.store import SubscriberStore

PREVIEW_SUBSCRIBER_ID = 0
PREVIEW_EMAIL = "reader@example.invalid"
PREVIEW_NAME = "Reader"


@dataclass(frozen=True, kw_only=True)
class PreviewResult:
    edition: Edition
    who: str
    subject: str = ""
    html_path: Path | None = None
    text_path: Path | None = None
    eml_path: Path | None = None
    html_bytes: int = 0
    papers: int = 0
    hidden: int = 0
    no_email: str | None = None
    """Why there is no email (empty edition, nothing new in these topics); None when files were written."""


def check_topics(settings: Settings, topics: Sequence[str]) -> None:
    known = [t.slug for t in settings.topics]
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise TopicError(
            f"unknown topic{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; valid topics: {', '.join(known)}"
        )


def _file_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def preview(
    settings: Settings,
    store: PaperStore,
    *,
    out_dir: Path,
    now: datetime,
    subscriber_email: str | None = None,
    topics: Sequence[str] | None = None,
    frequency: Frequency = "daily",
    day: date | None = None,
    nonce: str | None = None,
) -> PreviewResult:
    """Load (or compute, unstored) the edition; select and render for one reader; write .html, .txt, .eml."""
    if subscriber_email is not None and topics is not None:
        raise ConfigError("give either a subscriber or topics, not both")
    engine = store.engine
    if subscriber_email is not None:
        subscriber = SubscriberStore(engine).get_by_email(subscriber_email)
        if subscriber is None:
            raise ConfigError(f"no subscriber {subscriber_email.strip().lower()!r}")
        reader_id, email, name = subscriber.id, subscriber.email, subscriber.name
        wanted: Sequence[str] = subscriber.topics
        who = _file_part(subscriber.email)
    else:
        wanted = list(topics) if topics else [t.slug for t in settings.topics]
        check_topics(settings, wanted)
        reader_id, email, name = PREVIEW_SUBSCRIBER_ID, PREVIEW_EMAIL, PREVIEW_NAME
        who = "-".join(wanted) if topics else ""
    editions = EditionStore(engine)
    edition = edition_for(settings, store, editions, frequency=frequency, now=now, day=day, persist=False)
    if edition.is_empty:
        return PreviewResult(edition=edition, who=who, no_email=f"the edition is empty: {edition.empty_reason}")
    sent = papers_already_had(engine, edition, [reader_id]).get(reader_id, set()) if reader_id else set()
    selection = select(edition, wanted, max_per_topic=settings.email.max_papers_per_topic, already_sent=sent)
    if selection.is_empty:
        return PreviewResult(edition=edition, who=who, no_email="nothing new in these topics: no email")
    try:
        signer = signer_from_settings(settings)
    except SubscribersError as error:
        raise ConfigError(str(error)) from None
    recipient = recipient_links(settings, signer, subscriber_id=reader_id, email=email, name=name,
                                edition_slug=edition.slug)
    shown = [p.paper for s in selection.sections for p in s.papers]
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings), nonce=nonce,
                             model_tldrs=model_tldrs(settings, shown),
                             stored_tldrs=stored_tldrs(engine, shown, save=False))  # a preview records nothing
    html_text, plain_text = variant.personalise(recipient)
    template = message_template(settings, key=variant.key, subject=variant.subject, html=variant.html,
                                text=variant.text, nonce=variant.nonce, edition_slug=edition.slug,
                                frequency=edition.frequency)
    domain = settings.newsletter.from_address.rpartition("@")[2]
    message = sendable_message(template, recipient, settings=settings, date=now,
                               message_id=f"<preview-{variant.key[:16]}@{domain}>")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = edition.slug + (f"-{who}" if who else "")
    html_path, text_path, eml_path = (out_dir / f"{stem}{ext}" for ext in (".html", ".txt", ".eml"))
    html_path.write_text(html_text, encoding="utf-8")
    text_path.write_text(plain_text, encoding="utf-8")
    eml_path.write_bytes(message)
    return PreviewResult(
        edition=edition,
        who=who,
        subject=variant.subject,
        html_path=html_path,
        text_path=text_path,
        eml_path=eml_path,
        html_bytes=len(html_text.encode("utf-8")),
        papers=len(variant.paper_ids),
        hidden=len(variant.hidden_paper_ids),
    )
