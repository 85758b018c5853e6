"""A reader's private feed: Atom (RFC 4287) and JSON Feed 1.1 of the editions that reached that reader.

``/feed/<subscriber id>.<key>.atom`` and ``.json``, where the key is the random secret of
``storage/reader_feeds.py``: the manage page shows the URL and can rotate the key (the old URL then answers
404). An email's footer links ``/feed/<signed feed token>.atom`` (``rendering.links.feed_token``: made per
message without a database read); rotating refuses every token issued before it, with a 404 too. An
unsubscribed, bounced or complained reader's feed answers 410. Each entry is one paper as the reader's email
had it: in its section (the reader's topics, in the reader's order), with its one-line TL;DR, abstract
and the reasons it matched. Served from stored data (the ledger, the variant's papers, the edition snapshots
of the newest ``FEED_EDITIONS`` editions) with an ETag over the reader's sent rows, so a poll that finds
nothing new costs one indexed query and answers 304.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.delivery.channels.message import one_line_tldr
from newsletter.records.editions import Edition
from newsletter.rendering.context import display_title, safe_url
from newsletter.rendering.links import edition_url, read_feed_token
from newsletter.rendering.reasons import reason_in_words
from newsletter.storage.editions import EditionStore
from newsletter.storage.reader_feeds import ReaderFeeds
from newsletter.web.archive import xml_text
from newsletter.web.caching import etag_of, not_modified, not_modified_response, validator_headers
from newsletter.web.pages import PageError
from subscribers.store import SubscriberStore
from subscribers.tokens import TokenSigner


class WebApp(Protocol):
    """What these pages use of ``newsletter.web.app.WebApp`` (a protocol, so the two modules are no circle)."""

    settings: Settings
    engine: Engine
    editions: EditionStore
    store: SubscriberStore
    signer: TokenSigner

FEED_EDITIONS = 30
"""A private feed holds the reader's newest this many editions."""
ATOM = "http://www.w3.org/2005/Atom"
_TOKEN = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{20,64})")
STOPPED = frozenset({"unsubscribed", "bounced", "complained"})


def feed_path(subscriber_id: int, key: str, kind: str) -> str:
    return f"/feed/{subscriber_id}.{key}.{kind}"


def _entries(web: WebApp, subscriber_id: int, topics: tuple[str, ...]) -> list[dict[str, Any]]:
    """The reader's papers, newest edition first, each edition's in the reader's section order."""
    feeds = ReaderFeeds(web.engine)
    items: list[dict[str, Any]] = []
    for sent in feeds.editions(subscriber_id, limit=FEED_EDITIONS):
        edition = web.editions.get_by_id(sent.edition_id)
        if edition is None:
            continue
        items.extend(_edition_entries(web, edition, sent.paper_ids, topics, sent.sent_at))
    return items


def _edition_entries(web: WebApp, edition: Edition, papers: frozenset[str], topics: tuple[str, ...],
                     sent_at: datetime | None) -> list[dict[str, Any]]:
    by_slug = {t.slug: t for t in edition.topics}
    order = [s for s in topics if s in by_slug] + [t.slug for t in edition.topics if t.slug not in topics]
    page = edition_url(web.settings, edition.slug)
    seen: set[str] = set()
    items = []
    for slug in order:
        topic = by_slug[slug]
        for entry in topic.entries:
            if entry.paper_id not in papers or entry.paper_id in seen:
                continue
            seen.add(entry.paper_id)
            paper = edition.papers[entry.paper_id]
            items.append({
                "id": f"{page}#{entry.paper_id}",
                "title": xml_text(display_title(paper)),
                "url": safe_url(paper.abs_url) or page,
                "edition_url": page,
                "section": xml_text(topic.name),
                "tldr": xml_text(one_line_tldr(paper)),
                "abstract": xml_text(paper.abstract),
                "reasons": [xml_text(reason_in_words(r)) for r in entry.reasons],
                "authors": [xml_text(a) for a in paper.authors[:20]],
                "updated": (sent_at or edition.cutoff).astimezone(UTC).isoformat(),
            })
    return items


def atom_document(*, title: str, feed_url: str, home: str, updated: str, entries: list[dict[str, Any]]) -> bytes:
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", feed_url)
    sub(feed, "title", title)
    sub(feed, "updated", updated)
    sub(sub(feed, "author"), "name", title.split(":")[0])
    sub(feed, "link", rel="self", href=feed_url)
    sub(feed, "link", rel="alternate", href=home)
    for item in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", item["id"])
        sub(entry, "title", item["title"])
        sub(entry, "updated", item["updated"])
        sub(entry, "link", rel="alternate", href=item["url"])
        sub(entry, "link", rel="related", href=item["edition_url"])
        sub(entry, "category", term=item["section"])
        for name in item["authors"]:
            sub(sub(entry, "author"), "name", name)
        sub(entry, "summary", item["tldr"] or item["title"])
        why = "; ".join(item["reasons"])
        sub(entry, "content", "\n\n".join(p for p in (item["abstract"], f"Why: {why}" if why else "") if p),
            type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def json_feed(*, title: str, feed_url: str, home: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": title,
        "home_page_url": home,
        "feed_url": feed_url,
        "items": [{
            "id": item["id"],
            "url": item["url"],
            "external_url": item["edition_url"],
            "title": item["title"],
            "summary": item["tldr"],
            "content_text": item["abstract"],
            "date_published": item["updated"],
            "tags": [item["section"]],
            "authors": [{"name": name} for name in item["authors"]],
            "_newsletter": {"section": item["section"], "reasons": item["reasons"]},
        } for item in entries],
    }


class ReaderFeedPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.feeds = ReaderFeeds(web.engine)

    def _reader_id(self, token: str) -> int | None:
        """The subscriber of a current feed address: a stored key, or a signed token issued since the last
        rotation."""
        match = _TOKEN.fullmatch(token)
        if match is not None:
            return int(match.group(1)) if self.feeds.matches(int(match.group(1)), match.group(2)) else None
        signed = read_feed_token(self.web.signer.keyring, token)
        if signed is None or not self.feeds.token_valid(*signed):
            return None
        return signed[0]

    def _reader(self, token: str) -> tuple[int, str, tuple[str, ...]]:
        subscriber_id = self._reader_id(token)
        if subscriber_id is None:
            raise PageError(404, "This feed address is not valid", "It may have been replaced by a new one.")
        subscriber = self.web.store.get(subscriber_id)
        if subscriber is None:
            raise PageError(404, "This feed address is not valid", "There is no subscription for it any more.")
        if subscriber.status in STOPPED:
            raise PageError(410, "This feed has ended", "The subscription it belonged to has ended.")
        return subscriber.id, token, subscriber.topics

    async def serve(self, request: Request) -> Response:
        token, kind = request.path_params["token"], request.path_params["kind"]
        if kind not in ("atom", "json"):
            raise PageError(404, "No such feed", "Feeds end in .atom or .json.")
        subscriber_id, key, topics = await run_in_threadpool(self._reader, token)
        count, newest = await run_in_threadpool(self.feeds.version, subscriber_id)
        etag = etag_of("reader-feed", kind, subscriber_id, key, count, newest, ",".join(topics), FEED_EDITIONS)
        headers = validator_headers(etag, None, "private, max-age=900")
        if not_modified(request, etag, None):
            return not_modified_response(headers)
        entries = await run_in_threadpool(_entries, self.web, subscriber_id, topics)
        base = self.web.settings.newsletter.base_url.rstrip("/")
        feed_url = f"{base}/feed/{key}.{kind}"
        title = xml_text(f"{self.web.settings.newsletter.name}: your papers")
        home = f"{base}/archive"
        if kind == "json":
            body = json.dumps(json_feed(title=title, feed_url=feed_url, home=home, entries=entries),
                              ensure_ascii=False).encode("utf-8")
            media = "application/feed+json"
        else:
            updated = entries[0]["updated"] if entries else "1970-01-01T00:00:00+00:00"
            body = atom_document(title=title, feed_url=feed_url, home=home, updated=updated, entries=entries)
            media = "application/atom+xml; charset=utf-8"
        return Response(body, media_type=media, headers={**headers, "x-robots-tag": "noindex"})


def reader_feed_routes(
    web: WebApp, route: Callable[[str, Callable[[Request], Awaitable[Response]], str], Route]
) -> list[Route]:
    pages = ReaderFeedPages(web)
    return [route("/feed/{token}.{kind}", pages.serve, "GET")]


def feed_urls(web: WebApp, subscriber_id: int, *, now: datetime) -> dict[str, str]:
    """The reader's feed URLs (a key is made on first use), for the manage page."""
    key = ReaderFeeds(web.engine).key(subscriber_id, now=now)
    base = web.settings.newsletter.base_url.rstrip("/")
    return {kind: f"{base}{feed_path(subscriber_id, key, kind)}" for kind in ("atom", "json")}
