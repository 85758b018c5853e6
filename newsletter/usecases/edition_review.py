"""An editor's view of a stored edition and its approval: what `newsletter edition show|approve` and the JSON
API share, with the same rules and wording.

An edition can be changed (and approved) until its ledger is written (its send starts), and an empty one
only to undo a drop. Approving stores who approved and when; ``[schedule] approve = true`` makes `serve`
wait for it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.editions.review import apply_review
from newsletter.errors import NewsletterError
from newsletter.records.editions import Edition
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger
from newsletter.storage.reviews import Review, ReviewStore


class EditionError(NewsletterError):
    """The edition named does not exist, or can no longer be changed."""


def no_edition(name: str) -> EditionError:
    return EditionError(f"no edition {name!r} (editions are named like daily-2026-06-12; "
                        "`newsletter status` lists the recent ones)")


def stored_edition(engine: Engine, name: str) -> Edition:
    """The stored edition named by its slug or its numeric id, as the editor shaped it."""
    editions = EditionStore(engine)
    found = editions.get_by_id(int(name)) if name.isdigit() and len(name) < 12 else editions.get_by_slug(name)
    if found is None:
        raise no_edition(name)
    return apply_review(found, ReviewStore(engine).get(found.id))


def review_of(engine: Engine, edition: Edition) -> Review:
    return ReviewStore(engine).get(edition.id) or Review(edition_id=edition.id)


def changeable(engine: Engine, edition: Edition) -> Review:
    """The edition's review, when the edition may still be changed; else an EditionError saying why not."""
    if Ledger(engine).subscribers_with_rows(edition.id):
        raise EditionError(f"{edition.slug} is being sent or was sent; it can no longer be changed")
    if edition.is_empty and not review_of(engine, edition).dropped:
        raise EditionError(f"{edition.slug} is empty ({edition.empty_reason}); there is nothing to shape")
    return review_of(engine, edition)


def approve(settings: Settings, engine: Engine, edition: Edition, *, now: datetime, by: str) -> str:
    """Approve the edition; the sentence `edition approve` prints (also when it was approved already)."""
    review = changeable(engine, edition)
    if review.approved_at is not None:
        return f"{edition.slug}: already approved"
    ReviewStore(engine).save(dataclasses.replace(review, approved_at=now, approved_by=by), now=now)
    when = "at the next retry run of `serve`" if settings.schedule.approve else "by `newsletter send`"
    return f"{edition.slug}: approved; it will be sent {when}"


def edition_json(engine: Engine, edition: Edition, *, papers: bool = False) -> dict[str, Any]:
    """An edition as the JSON API gives it: ``papers`` adds its topics and papers in the email's order."""
    review = review_of(engine, edition)
    found: dict[str, Any] = {
        "id": edition.id,
        "slug": edition.slug,
        "frequency": edition.frequency,
        "date": edition.date.isoformat(),
        "created": edition.created.isoformat() if edition.created else None,
        "papers": edition.paper_count,
        "empty_reason": edition.empty_reason,
        "note": review.note,
        "approved_at": review.approved_at.isoformat() if review.approved_at else None,
        "approved_by": review.approved_by,
        "deliveries": Ledger(engine).counts(edition.id),
    }
    if papers:
        found["pinned"] = list(review.pinned)
        found["dropped"] = list(review.dropped)
        found["topics"] = [
            {"slug": topic.slug, "name": topic.name,
             "papers": [{"id": entry.paper_id, "title": edition.papers[entry.paper_id].title,
                         "pinned": entry.paper_id in review.pinned} for entry in topic.entries]}
            for topic in edition.topics
        ]
    return found
