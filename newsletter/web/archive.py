"""What the archive pages and the per-topic Atom feeds show, from stored editions only. Pure (no I/O).

The archive list and the feeds are built from the per-edition index (``newsletter.records.index``); only
an edition's own page is rendered from its snapshot, once, and then stored (``EditionIndex.store_page``).

An archived edition is rendered again from its snapshot by the email's own templates
(``newsletter.rendering.context``) for the all-topics selection — every paper of the edition, in every topic it
was sent under — for a neutral stand-in reader: the personal fields are fixed, impersonal values, so no
one's name, address or signed link can appear on a public page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from newsletter.config import Settings, TopicSettings
from newsletter.editions.selection import Selection, select
from newsletter.records.editions import Edition
from newsletter.records.index import EditionSummary, FeedEntry
from newsletter.records.text import collapse_whitespace
from newsletter.rendering.context import PERSONAL_FIELDS, email_context, safe_url, subject_line
from newsletter.rendering.latex import latex_to_text
from newsletter.rendering.links import edition_url

FEED_ENTRIES = 50
"""A topic feed keeps its newest this many papers."""
ARCHIVE_PAGE = 50
"""Editions per archive page (``/archive?page=N``)."""
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def all_topics_selection(edition: Edition) -> Selection:
    """Every paper of the edition in every topic section, best first (no per-topic cap)."""
    return select(edition, [t.slug for t in edition.topics], max_per_topic=max(1, len(edition.papers)))


def stand_in_reader(settings: Settings, edition: Edition) -> dict[str, str]:
    base = settings.newsletter.base_url.rstrip("/")
    values = {
        "name": "",
        "greeting": "Hello,",
        "email": "a subscriber",
        "manage_url": f"{base}/",
        "unsubscribe_url": f"{base}/",
        "view_url": edition_url(settings, edition.slug),
        "feedback_url": "",  # no reader on the web: no "more/less like this" links (they would lead nowhere)
        "feed_url": "",  # nor a private feed
    }
    assert set(values) == set(PERSONAL_FIELDS)  # a new personal field must get a neutral value here
    return values


def edition_page_context(settings: Settings, edition: Edition, *, root: str) -> dict[str, Any]:
    """The context of ``web/edition.html.j2`` (which extends the email template)."""
    selection = all_topics_selection(edition)
    subject = subject_line(selection, settings=settings)
    context = email_context(selection, settings=settings, subject=subject, nonce="archive",
                            abstract_chars=settings.email.abstract_chars, tldr=False)
    context["recipient"] = stand_in_reader(settings, edition)
    context["web"] = {
        "home": f"{root}/",
        "archive": f"{root}/archive",
        "feeds": [{"name": s.name, "url": f"{root}/topics/{quote(s.slug)}.atom"} for s in selection.sections],
    }
    return context


def archive_list(editions: Iterable[EditionSummary], *, root: str) -> list[dict[str, Any]]:
    """Non-empty editions, as the archive index lists them (in the order given: newest first)."""
    return [
        {
            "slug": e.slug,
            "url": f"{root}/archive/{quote(e.slug)}",
            "label": f"{'Daily' if e.frequency == 'daily' else 'Weekly'} edition, {e.date.day} {e.date:%B %Y}",
            "date_iso": e.date.isoformat(),
            "papers": e.paper_count,
            "topics": [t.name for t in e.topics if t.count],
        }
        for e in editions
        if e.paper_count
    ]


def xml_text(text: str | None) -> str:
    """One line of text without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("", collapse_whitespace(text or ""))


def topic_feed_context(settings: Settings, topic: TopicSettings, entries: Iterable[FeedEntry]) -> dict[str, Any]:
    """An Atom feed of the papers sent under one topic, newest edition first, each paper once.

    ``entries`` come from the per-edition index (``EditionIndex.feed``), already limited to the newest
    ``FEED_ENTRIES`` distinct papers, so a feed costs the same after a year of editions as after one.
    """
    base = settings.newsletter.base_url.rstrip("/")
    feed_url = f"{base}/topics/{quote(topic.slug)}.atom"
    items: list[dict[str, Any]] = []
    updated = None
    for entry in entries:
        archive_url = f"{edition_url(settings, entry.edition_slug)}#{quote(topic.slug)}"
        link = safe_url(entry.abs_url) or archive_url
        updated = updated or entry.cutoff
        items.append({
            "id": link if safe_url(entry.abs_url) else f"{archive_url}:{quote(entry.paper_id, safe='')}",
            "title": xml_text(latex_to_text(entry.title)) or entry.paper_id,
            "link": link,
            "archive_url": archive_url,
            "updated": entry.cutoff.isoformat(),
            "authors": xml_text(entry.authors),
            "summary": xml_text(latex_to_text(entry.summary)),
            "why": xml_text(entry.why),
        })
    return {
        "feed": {
            "id": feed_url,
            "url": feed_url,
            "archive": f"{base}/archive",
            "title": xml_text(f"{settings.newsletter.name}: {topic.name}"),
            "subtitle": xml_text(topic.description),
            "author": xml_text(settings.newsletter.name),
            "updated": (updated.isoformat() if updated else "1970-01-01T00:00:00+00:00"),
        },
        "entries": items,
    }
