"""One record per paper, whatever source or version it came from.

Pure rules, no I/O: the text of the most authoritative sighting wins (higher version first, then a source
that lists arXiv categories over one that does not), links and Hugging Face extras fill in, counts keep
the highest value seen, and the set of sources only grows. Signals are combined, never added twice.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from newsletter.records.papers import Paper

_TEXT_FIELDS = ("title", "authors", "abstract", "categories", "primary_category")
_FILL_FIELDS = (
    "abs_url", "pdf_url", "hf_url", "code_url", "project_url", "thumbnail_url", "ai_summary", "ai_keywords",
    "announce_type",
)


def _authority(paper: Paper) -> tuple[int, bool]:
    return (paper.version or 0, bool(paper.categories))


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def merge_paper(existing: Paper | None, incoming: Paper, *, now: datetime) -> tuple[Paper, bool]:
    """Return the merged record and whether it differs from ``existing`` (False: nothing to write)."""
    if existing is None:
        return dataclasses.replace(incoming, first_seen=incoming.first_seen or now, updated=now), True
    changes: dict[str, object] = {}
    if _authority(incoming) >= _authority(existing):
        changes.update({name: getattr(incoming, name) for name in _TEXT_FIELDS if getattr(incoming, name)})
    for name in _FILL_FIELDS:
        value = getattr(incoming, name)
        if value:
            changes[name] = value
    changes["version"] = _max(existing.version, incoming.version)
    changes["upvotes"] = _max(existing.upvotes, incoming.upvotes)
    changes["github_stars"] = _max(existing.github_stars, incoming.github_stars)
    changes["published"] = _earliest(existing.published, incoming.published)
    changes["sources"] = tuple(dict.fromkeys(existing.sources + incoming.sources))
    merged = dataclasses.replace(existing, **changes)  # type: ignore[arg-type]
    if merged == existing:
        return existing, False
    return dataclasses.replace(merged, updated=now), True
