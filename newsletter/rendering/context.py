"""What the email templates see: a selection turned into plain dicts and strings (documented in docs/templates.md).

Pure. Feed text stays data (the templates escape it); links are kept only when they are http(s) URLs.
Personal values are placeholders here, filled in per reader after rendering (``newsletter.rendering.render``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from newsletter.config import Settings
from newsletter.editions.records import EditionPaper
from newsletter.editions.selection import SelectedPaper, Selection
from newsletter.rendering.links import edition_url
from newsletter.sources.text import collapse_whitespace, shorten

PERSONAL_FIELDS = ("name", "greeting", "email", "manage_url", "unsubscribe_url", "view_url", "feedback_url")
THUMBNAIL_SIZE = (536, 281)
MAX_AUTHORS = 4
SUBJECT_TOPICS = 3
MAX_SUBJECT_CHARS = 200


def placeholder_prefix(nonce: str) -> str:
    return f"__nl{nonce}_"


def placeholder(nonce: str, name: str) -> str:
    """Letters, digits and ``_`` only: HTML escaping, URL escaping and Premailer leave it as it is."""
    return f"{placeholder_prefix(nonce)}{name}__"


def placeholder_pattern(nonce: str) -> re.Pattern[str]:
    """Finds the placeholders of one render; the group ``name`` is the personal field."""
    return re.compile(rf"{re.escape(placeholder_prefix(nonce))}(?P<name>[a-z]+(?:_[a-z]+)*)__")


def safe_url(url: str | None) -> str | None:
    """http(s) URLs only, with characters that could leave an attribute percent-encoded."""
    if not url:
        return None
    url = url.strip()
    if not re.match(r"https?://", url, re.IGNORECASE):
        return None
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def short_authors(authors: Sequence[str]) -> str:
    if len(authors) <= MAX_AUTHORS:
        return ", ".join(authors)
    return f"{', '.join(authors[: MAX_AUTHORS - 1])} et al. ({len(authors)} authors)"


def _links(paper: EditionPaper) -> list[dict[str, str]]:
    links: list[dict[str, str]] = []
    candidates = [
        ("Abstract", paper.abs_url),
        ("PDF", paper.pdf_url),
        ("Hugging Face", paper.hf_url),
        (f"Code (★ {paper.github_stars:,})" if paper.github_stars else "Code", paper.code_url),
        ("Project page", paper.project_url),
    ]
    for label, url in candidates:
        checked = safe_url(url)
        if checked:
            links.append({"label": label, "url": checked})
    return links


def paper_card(selected: SelectedPaper, *, abstract_chars: int) -> dict[str, Any]:
    """What a template sees of one paper (documented in docs/templates.md)."""
    paper = selected.paper
    links = _links(paper)
    summary_source = paper.ai_summary or paper.abstract
    thumbnail_url = safe_url(paper.thumbnail_url)
    title = collapse_whitespace(paper.title) or paper.paper_id
    width, height = THUMBNAIL_SIZE
    return {
        "id": paper.paper_id,
        "title": title,
        "url": links[0]["url"] if links else "",
        "authors": short_authors(paper.authors),
        "summary": shorten(collapse_whitespace(summary_source), abstract_chars) if abstract_chars else "",
        "summary_is_ai": bool(paper.ai_summary),
        "thumbnail": {"url": thumbnail_url, "alt": f"Figure from “{shorten(title, 120)}”", "width": width,
                      "height": height} if thumbnail_url else None,
        "links": links,
        "upvotes": paper.upvotes or 0,
        "stars": paper.github_stars or 0,
        "why": "; ".join(selected.reasons),
        "also_in": list(selected.also_in),
        "score": f"{paper.score:.2f}",
        "score_explanation": paper.score_explanation,
        "published": (paper.published or "")[:10],
    }


def _topics_phrase(names: Sequence[str]) -> str:
    if len(names) <= SUBJECT_TOPICS:
        return ", ".join(names)
    return f"{', '.join(names[:SUBJECT_TOPICS - 1])} and {len(names) - SUBJECT_TOPICS + 1} more"


def subject_line(selection: Selection, *, settings: Settings) -> str:
    """The configured subject with its fields filled in; one line whatever the feed or topic text holds."""
    edition = selection.edition
    values = {
        "name": settings.newsletter.name,
        "count": str(selection.paper_count),
        "topics": _topics_phrase([s.name for s in selection.sections]),
        "date": f"{edition.date.day} {edition.date:%B %Y}",
        "frequency": edition.frequency,
    }
    subject = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), settings.email.subject)
    subject = collapse_whitespace("".join(c if c.isprintable() else " " for c in subject))
    return shorten(subject, MAX_SUBJECT_CHARS)


def email_context(
    selection: Selection,
    *,
    settings: Settings,
    subject: str,
    nonce: str,
    abstract_chars: int,
    shown: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Everything the templates see (documented in docs/templates.md); ``shown`` limits the papers shown."""
    edition = selection.edition
    archive = edition_url(settings, edition.slug)
    sections = []
    for section in selection.sections:
        visible = [p for p in section.papers if shown is None or p.paper.paper_id in shown]
        sections.append({
            "slug": section.slug,
            "name": section.name,
            "papers": [paper_card(p, abstract_chars=abstract_chars) for p in visible],
            "total": len(section.papers),
            "hidden": len(section.papers) - len(visible),
            "more_url": f"{archive}#{section.slug}",
        })
    count = selection.paper_count
    names = [s.name for s in selection.sections]
    return {
        "subject": subject,
        "preheader": f"{count} new paper{'' if count == 1 else 's'}: {', '.join(names)}",
        "newsletter": {"name": settings.newsletter.name, "base_url": settings.newsletter.base_url},
        "edition": {
            "slug": edition.slug,
            "frequency": edition.frequency,
            "label": "Daily edition" if edition.frequency == "daily" else "Weekly edition",
            "date": f"{edition.date:%A}, {edition.date.day} {edition.date:%B %Y}",
            "date_iso": edition.date.isoformat(),
            "url": archive,
            "paper_count": edition.paper_count,
        },
        "sections": sections,
        "count": count,
        "hidden": sum(s["hidden"] for s in sections),
        "postal_address": collapse_whitespace(settings.email.postal_address),
        "recipient": {name: placeholder(nonce, name) for name in PERSONAL_FIELDS},
    }
