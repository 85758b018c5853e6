"""An editor shapes a built edition before it is sent: pin, drop, note, approve; and re-queues its deliveries.

Shared by `newsletter edition …`, `newsletter deliveries retry` and the web console, so the checks and the
words are the same everywhere. Pinned papers go first in every topic they are in; dropped ones vanish for
every reader; the note appears at the top of every email. Changes apply until the edition's ledger is
written (its send starts); after that they are refused, since some readers may already have it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.storage.console_reads import has_deliveries
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger
from newsletter.storage.papers import PaperStore
from newsletter.storage.reviews import Review, ReviewStore

if TYPE_CHECKING:
    from newsletter.records.editions import Edition, Frequency


class EditionError(NewsletterError):
    """The edition named does not exist, or can no longer be changed."""


def stored_edition(engine: Engine, name: str) -> Edition:
    """The stored edition named by its slug (daily-2026-06-12) or id."""
    store = EditionStore(engine)
    found = store.get_by_id(int(name)) if name.isdigit() else store.get_by_slug(name)
    if found is None:
        raise EditionError(f"no edition {name!r} (editions are named like daily-2026-06-12; "
                           "`newsletter status` lists the recent ones)")
    return found


def find_edition(settings: Settings, engine: Engine, *, slug: str | None, frequency: Frequency, day: date | None,
                 now: datetime) -> Edition:
    """The stored edition named by ``slug``, or of ``frequency``/``day`` (built and stored now if needed)."""
    from newsletter.usecases.campaign import edition_for  # matching libraries: only to build a new edition

    if slug is not None:
        stored = stored_edition(engine, slug)
        frequency, day = stored.frequency, stored.date
    return edition_for(settings, PaperStore(engine), EditionStore(engine), frequency=frequency, now=now, day=day)


def review_of(engine: Engine, edition: Edition) -> Review:
    return ReviewStore(engine).get(edition.id) or Review(edition_id=edition.id)


def is_sending(engine: Engine, edition: Edition) -> bool:
    """Whether the edition's ledger is written: it is being sent or was sent."""
    return has_deliveries(engine, edition.id)


def _changeable(engine: Engine, edition: Edition) -> Review:
    if is_sending(engine, edition):
        raise EditionError(f"{edition.slug} is being sent or was sent; it can no longer be changed")
    review = review_of(engine, edition)
    if edition.is_empty and not review.dropped:
        raise EditionError(f"{edition.slug} is empty ({edition.empty_reason}); there is nothing to shape")
    return review


def _paper(edition: Edition, review: Review, paper_id: str) -> str:
    if paper_id not in edition.papers and paper_id not in review.dropped:
        raise EditionError(f"paper {paper_id!r} is not in {edition.slug} (`newsletter edition show` lists its papers)")
    return paper_id


def _save(engine: Engine, review: Review, now: datetime) -> None:
    ReviewStore(engine).save(review, now=now)


def pin_paper(engine: Engine, edition: Edition, paper_id: str, *, now: datetime) -> str:
    """Put the paper first in every topic it is in (earlier pins stay ahead); returns what was done, in words."""
    review = _changeable(engine, edition)
    paper = _paper(edition, review, paper_id)
    pinned = (*[p for p in review.pinned if p != paper], paper)
    dropped = tuple(p for p in review.dropped if p != paper)
    _save(engine, dataclasses.replace(review, pinned=pinned, dropped=dropped), now)
    return f"{edition.slug}: pinned {paper}"


def drop_paper(engine: Engine, edition: Edition, paper_id: str, *, now: datetime) -> str:
    review = _changeable(engine, edition)
    paper = _paper(edition, review, paper_id)
    pinned = tuple(p for p in review.pinned if p != paper)
    dropped = (*[p for p in review.dropped if p != paper], paper)
    _save(engine, dataclasses.replace(review, pinned=pinned, dropped=dropped), now)
    return f"{edition.slug}: dropped {paper}"


def set_note(engine: Engine, edition: Edition, text: str, *, now: datetime) -> str:
    """Show the text at the top of every email of the edition ('' removes the note)."""
    review = _changeable(engine, edition)
    _save(engine, dataclasses.replace(review, note=" ".join(text.split())), now)
    return f"{edition.slug}: note {'set' if text.strip() else 'removed'}"


def approve_edition(settings: Settings, engine: Engine, edition: Edition, *, now: datetime, by: str) -> str:
    """Let `serve` send the edition ([schedule] approve = true); ``by`` is kept as who approved it."""
    review = _changeable(engine, edition)
    if review.approved_at is not None:
        return f"{edition.slug}: already approved"
    _save(engine, dataclasses.replace(review, approved_at=now, approved_by=by[:100]), now)
    when = "at the next retry run of `serve`" if settings.schedule.approve else "by `newsletter send`"
    return f"{edition.slug}: approved; it will be sent {when}"


def retry_deliveries(engine: Engine, name: str, *, states: Collection[str], email: str | None,
                     now: datetime) -> str:
    """Put the edition's rows of ``states`` (one reader's with ``email``) back to pending; returns it in words."""
    found = stored_edition(engine, name)
    count = Ledger(engine).requeue(found.id, states=states, email=email, now=now)
    who = f" for {email}" if email else ""
    return (f"re-queued {count} {'/'.join(states)} deliveries of {found.slug}{who}; send them with `newsletter send "
            f"--frequency {found.frequency} --date {found.date.isoformat()}` (or `serve`'s next retry run)")
