"""What the email templates see: a selection turned into plain dicts and strings (documented in docs/templates.md).

Pure. Feed text stays data (the templates escape it); links are kept only when they are http(s) URLs.
Personal values are placeholders here, filled in per reader after rendering (``newsletter.rendering.render``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from newsletter.config import Settings
from newsletter.editions.relevance import is_relevant
from newsletter.editions.selection import SelectedPaper, Selection
from newsletter.records.editions import PIN_RANK, EditionPaper
from newsletter.records.summaries import fit_sentence, split_sentences
from newsletter.records.text import collapse_whitespace, short_authors, shorten
from newsletter.rendering.inbox import lead_papers, lead_phrase, preheader_text, weekly_prefix
from newsletter.rendering.latex import latex_to_text
from newsletter.rendering.links import edition_url
from newsletter.rendering.personal import PERSONAL_FIELDS as PERSONAL_FIELDS
from newsletter.rendering.personal import placeholder as placeholder
from newsletter.rendering.personal import placeholder_pattern as placeholder_pattern
from newsletter.rendering.personal import placeholder_prefix as placeholder_prefix
from newsletter.rendering.personal import safe_url as safe_url
from newsletter.rendering.reasons import reason_in_words, reason_terms
from newsletter.rendering.tldr import card_tldr, tldr_source

THUMBNAIL_SIZE = (536, 281)
SUBJECT_TOPICS = 3
MAX_SUBJECT_CHARS = 200
TOP_TITLE_CHARS = 90
MIN_PAPERS_FOR_TOP = 6
"""A "top of the edition" block only when the email is long enough to need one."""
BLURB_CHARS = 120
"""A top pick's one line: the first sentence of its TL;DR, cut to this."""
WORDS_PER_MINUTE = 230
QUIET_LABELS = {"Abstract": "Abstract", "PDF": "PDF", "Hugging Face": "Hugging Face", "Project page": "Project"}


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


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def trend_badge(paper: EditionPaper) -> str:
    """"▲ 103 · ★ 251": Hugging Face upvotes and GitHub stars, the trending signal by a title; "" for none."""
    parts = []
    if paper.upvotes:
        parts.append(f"▲ {paper.upvotes:,}")
    if paper.github_stars:
        parts.append(f"★ {paper.github_stars:,}")
    return " · ".join(parts)


def anchor(paper_id: str) -> str:
    """The id of a paper's card, for the top picks' links down to it."""
    return "p-" + re.sub(r"[^A-Za-z0-9_-]", "-", paper_id)


def trend_phrase(paper: EditionPaper) -> str:
    """Why a paper trends, in the counts a reader knows: "42 upvotes, 310 stars"; "" when there are none."""
    parts = []
    if paper.upvotes:
        parts.append(_plural(paper.upvotes, "upvote"))
    if paper.github_stars:
        parts.append(_plural(paper.github_stars, "star"))
    return ", ".join(parts)


def display_title(paper: EditionPaper) -> str:
    return latex_to_text(collapse_whitespace(paper.title)) or paper.paper_id


def top_papers(papers: Iterable[SelectedPaper], count: int) -> list[SelectedPaper]:
    """Papers an editor pinned first, then the relevant tier of the reader's sections (``editions.relevance``),
    then the most trending (trending score, then upvotes and stars), each once."""
    unique = {p.paper.paper_id: p for p in reversed(list(papers))}
    ordered = sorted(unique.values(), key=lambda p: (p.rank < PIN_RANK, not is_relevant(p.rank), -p.paper.score,
                                                     -(p.paper.upvotes or 0),
                                                     -(p.paper.github_stars or 0), p.paper.paper_id))
    return ordered[:count]


def paper_card(selected: SelectedPaper, *, abstract_chars: int, tldr: bool = False, topic: str = "",
               model_tldr: str = "", stored_tldr: str = "") -> dict[str, Any]:
    """What a template sees of one paper (documented in docs/templates.md). ``tldr``: the summary is the
    card's TL;DR (an email) instead of the abstract cut at ``abstract_chars`` (the web archive); a
    ``model_tldr`` (``[email.tldr] endpoint``) replaces the extractive one; a ``stored_tldr`` (the paper's
    TL;DR as ``usecases.tldrs`` stored it) is used instead of summarising again. ``topic``: the section's
    name, for the reason in words."""
    paper = selected.paper
    links = _links(paper)
    if tldr:
        summary = (latex_to_text(model_tldr) if model_tldr and not paper.ai_summary else
                   stored_tldr or card_tldr(paper))
    else:
        summary = shorten(tldr_source(paper), abstract_chars) if abstract_chars else ""
    thumbnail_url = safe_url(paper.thumbnail_url)
    title = display_title(paper)
    width, height = THUMBNAIL_SIZE
    url = links[0]["url"] if links else ""
    reasons = [r for r in (reason_in_words(r) for r in selected.reasons) if r]
    return {
        "id": paper.paper_id,
        "anchor": anchor(paper.paper_id),
        "title": title,
        "url": url,
        "authors": short_authors(paper.authors),
        "summary": summary,
        "summary_is_ai": bool(paper.ai_summary),
        "summary_label": "AI summary (Hugging Face)" if paper.ai_summary else "",
        "thumbnail": {"url": thumbnail_url, "alt": f"Figure from “{shorten(title, 120)}”", "width": width,
                      "height": height} if thumbnail_url else None,
        "links": links,
        "quiet_links": [{"label": QUIET_LABELS.get(link["label"], "Code"), "url": link["url"]}
                        for link in links if link["url"] != url],
        "upvotes": paper.upvotes or 0,
        "stars": paper.github_stars or 0,
        "trend": trend_phrase(paper),
        "badge": trend_badge(paper),
        "why": reason_terms(topic, reasons) if topic and reasons else "; ".join(reasons),
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
        "top": _top_title(selection),
        "lead": lead_phrase([display_title(p.paper) for p in lead_papers(selection)], selection.paper_count),
        "weekly": weekly_prefix(edition.frequency),
    }
    subject = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), settings.email.subject)
    subject = collapse_whitespace("".join(c if c.isprintable() else " " for c in subject))
    return shorten(subject, MAX_SUBJECT_CHARS)


def _top_title(selection: Selection) -> str:
    top = top_papers((p for s in selection.sections for p in s.papers), 1)
    return shorten(display_title(top[0].paper), TOP_TITLE_CHARS) if top else ""


def edition_dates(frequency: str, day: date, window_start: date) -> str:
    """"Monday, 27 April 2026" for a daily edition; "21–27 April 2026" for a weekly one (its window)."""
    if frequency == "daily":
        return f"{day:%A}, {day.day} {day:%B %Y}"
    start = window_start + timedelta(days=1) if window_start < day else day - timedelta(days=6)
    if (start.year, start.month) == (day.year, day.month):
        return f"{start.day}–{day.day} {day:%B %Y}"
    if start.year == day.year:
        return f"{start.day} {start:%B} – {day.day} {day:%B %Y}"
    return f"{start.day} {start:%B %Y} – {day.day} {day:%B %Y}"


def _blurb(card: dict[str, Any]) -> str:
    sentences = split_sentences(card["summary"])
    return fit_sentence(sentences[0], BLURB_CHARS) if sentences else ""


def _repeats_first_cards(picks: Sequence[SelectedPaper], sections: Sequence[dict[str, Any]]) -> bool:
    """True when the picks are just the first cards the reader sees anyway (a one-topic reader's top)."""
    first = [card["id"] for section in sections for card in section["papers"]][: len(picks)]
    return len(sections) < 2 or sorted(first) == sorted(p.paper.paper_id for p in picks)


def email_context(
    selection: Selection,
    *,
    settings: Settings,
    subject: str,
    nonce: str,
    abstract_chars: int,
    shown: frozenset[str] | None = None,
    tldr: bool = True,
    model_tldrs: Mapping[str, str] | None = None,
    full_cards: int | None = None,
    stored_tldrs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the templates see (documented in docs/templates.md); ``shown`` limits the papers shown;
    ``tldr``: cards show their TL;DR (the email) or the abstract (the web archive); ``full_cards``: the
    papers of each section past this many (in the section's order) are marked ``compact`` (rows), None: none
    are; ``stored_tldrs``: TL;DRs already made, by paper id (``usecases.tldrs``)."""
    edition = selection.edition
    archive = edition_url(settings, edition.slug)
    sections = []
    cards: dict[str, dict[str, Any]] = {}
    for section in selection.sections:
        visible = [p for p in section.papers if shown is None or p.paper.paper_id in shown]
        papers = [paper_card(p, abstract_chars=abstract_chars, tldr=tldr, topic=section.name,
                             model_tldr=(model_tldrs or {}).get(p.paper.paper_id, ""),
                             stored_tldr=(stored_tldrs or {}).get(p.paper.paper_id, "")) for p in visible]
        for position, card in enumerate(papers):
            card["compact"] = full_cards is not None and position >= full_cards
            card["blurb"] = _blurb(card)
            cards.setdefault(card["id"], card)
        sections.append({
            "slug": section.slug,
            "name": section.name,
            "papers": papers,
            "total": len(section.papers),
            "shown": len(visible),
            "hidden": len(section.papers) - len(visible),
            "more_url": f"{archive}#{section.slug}",
        })
    count = selection.paper_count
    names = [s.name for s in selection.sections]
    shown_papers = [p for s in selection.sections for p in s.papers if shown is None or p.paper.paper_id in shown]
    visible_count = len(cards)
    picks = top_papers(shown_papers, 5 if visible_count >= 15 else 3) if visible_count >= MIN_PAPERS_FOR_TOP else []
    if _repeats_first_cards(picks, sections):
        picks = []
    section_of = {p.paper.paper_id: s.name for s in reversed(selection.sections) for p in s.papers}
    top = [{"number": number, "id": p.paper.paper_id, "title": display_title(p.paper),
            "url": cards[p.paper.paper_id]["url"], "anchor": cards[p.paper.paper_id]["anchor"],
            "blurb": cards[p.paper.paper_id]["blurb"], "badge": trend_badge(p.paper), "trend": trend_phrase(p.paper),
            "section": section_of[p.paper.paper_id]}
           for number, p in enumerate(picks, start=1)]
    lead = lead_papers(selection, 1)
    lead_card = cards.get(lead[0].paper.paper_id) if lead else None
    fallback = f"{_plural(count, 'new paper')} in {_topics_phrase(names)}"
    preheader = preheader_text(lead_card["summary"], lead_card["title"], subject, fallback) if lead_card else fallback
    words = sum(len(c["title"].split()) + len((c["blurb"] if c["compact"] else c["summary"]).split())
                for c in cards.values())
    hidden = count - visible_count
    window_start = edition.window_start.date()
    return {
        "subject": subject,
        "preheader": preheader,
        "newsletter": {"name": settings.newsletter.name, "base_url": settings.newsletter.base_url,
                       "home_url": safe_url(settings.newsletter.base_url.rstrip("/") + "/") or "",
                       "archive_url": safe_url(settings.newsletter.base_url.rstrip("/") + "/archive") or ""},
        "brand": {"accent": settings.email.accent_color, "logo_url": safe_url(settings.email.logo_url) or ""},
        "top": top,
        "toc": [{"name": s["name"], "slug": s["slug"], "shown": s["shown"]} for s in sections]
        if len(sections) > 1 else [],
        "reading_minutes": max(1, round(words / WORDS_PER_MINUTE)),
        "edition": {
            "slug": edition.slug,
            "frequency": edition.frequency,
            "other_frequency": "weekly" if edition.frequency == "daily" else "daily",
            "label": "Daily edition" if edition.frequency == "daily" else "Weekly edition",
            "date": edition_dates(edition.frequency, edition.date, window_start),
            "date_iso": edition.date.isoformat(),
            "url": archive,
            "paper_count": edition.paper_count,
            "note": edition.note,
        },
        "sections": sections,
        "count": count,
        "shown": visible_count,
        "hidden": hidden,
        "postal_address": collapse_whitespace(settings.email.postal_address),
        "recipient": {name: placeholder(nonce, name) for name in PERSONAL_FIELDS},
    }
