"""An edition as the JSON API gives it: the stored edition as the editor shaped it, its review and counts.

Finding, changing and approving an edition are ``newsletter.usecases.review`` (shared with `newsletter
edition …` and the console); this adds only the JSON shape.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from newsletter.editions.review import apply_review
from newsletter.records.editions import Edition
from newsletter.storage.ledger import Ledger
from newsletter.usecases.review import review_of, stored_edition


def shaped_edition(engine: Engine, name: str) -> Edition:
    """The stored edition named by its slug or numeric id, as the editor shaped it (pins, drops)."""
    edition = stored_edition(engine, name)
    return apply_review(edition, review_of(engine, edition))


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
