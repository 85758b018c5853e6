"""An editor's view of a stored edition and its approval, as the JSON API gives them; the rules and wording
are ``newsletter.usecases.review``'s, which `newsletter edition …` and the web console use.

An edition can be changed (and approved) until its ledger is written (its send starts), and an empty one
only to undo a drop. Approving stores who approved and when; ``[schedule] approve = true`` makes `serve`
wait for it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from newsletter.editions.review import apply_review
from newsletter.records.editions import Edition
from newsletter.storage.ledger import Ledger
from newsletter.storage.reviews import ReviewStore
from newsletter.usecases import review as editing
from newsletter.usecases.review import EditionError, review_of

__all__ = ["EditionError", "approve", "edition_json", "review_of", "stored_edition"]

approve = editing.approve_edition
"""Approve the edition; the sentence `edition approve` prints (the CLI's and the console's use case)."""


def stored_edition(engine: Engine, name: str) -> Edition:
    """The stored edition named by its slug or its numeric id, as the editor shaped it."""
    found = editing.stored_edition(engine, name)
    return apply_review(found, ReviewStore(engine).get(found.id))


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
