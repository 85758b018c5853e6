"""The public pages that grow with history — the archive, edition pages, topic feeds — and the health check.

A mixin of ``WebApp`` (``newsletter.web.app``), apart because of why it exists: each handler reads the
per-edition index (``newsletter.storage.edition_index``), never an edition's snapshot, except to render an
edition's page once (then stored). Every response carries an ETag and Last-Modified and answers 304 to a
current copy; archive pages and feeds are kept rendered under their ETag. So the cost of a request does
not grow with the number of editions, and ``/healthz`` only asks whether the database answers.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from newsletter.config import Settings
from newsletter.editions.review import apply_review
from newsletter.rendering.templating import RenderEnvironment
from newsletter.storage.edition_index import EditionIndex, ping
from newsletter.storage.editions import EditionStore
from newsletter.storage.reviews import ReviewStore
from newsletter.web.archive import (
    ARCHIVE_PAGE,
    FEED_ENTRIES,
    archive_list,
    edition_page_context,
    topic_feed_context,
)
from newsletter.web.caching import etag_of, not_modified, not_modified_response, validator_headers
from newsletter.web.pages import PageError
from newsletter.web.security import ARCHIVE_CSP

log = logging.getLogger(__name__)

_ARCHIVE_CACHE = 32
_RENDERED_CACHE = 64
SMALL_NUMBER = re.compile(r"[0-9]{1,6}")
"""ASCII digits only: ``str.isdigit`` accepts '²', which ``int`` refuses (a 500), and 5000 digits cost time."""


class ArchivePages:
    settings: Settings
    engine: Engine
    environment: RenderEnvironment
    editions: EditionStore
    clock: Callable[[], datetime]

    def __init__(self) -> None:
        self.edition_index = EditionIndex(self.engine)
        self.archive_cache: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """(etag, html) of recently served edition pages, so a hot page costs no query for its HTML."""
        self.rendered: OrderedDict[str, str] = OrderedDict()
        """Archive pages and feeds by ETag (``remember``)."""

    def base_context(self, request: Request) -> dict[str, Any]:  # pragma: no cover - WebApp's is used
        raise NotImplementedError

    async def archive_index(self, request: Request) -> Response:
        """One page of the archive, newest first, from the per-edition index (never the snapshots)."""
        raw = request.query_params.get("page", "1")
        if not (SMALL_NUMBER.fullmatch(raw) and int(raw) >= 1):
            raise PageError(400, "Bad page number", "The page number must be a whole number from 1.")
        number = int(raw)
        root = self.base_context(request)["root"]
        count, newest, created = await run_in_threadpool(self.edition_index.version)
        etag = etag_of("archive", self.environment.fingerprint, root, number, count, newest)
        headers = validator_headers(etag, created, "public, max-age=300")
        if not_modified(request, etag, created):
            return not_modified_response(headers)
        pages = max(1, -(-count // ARCHIVE_PAGE))
        if number > pages:
            raise PageError(404, "No such page", f"The archive has {pages} page{'' if pages == 1 else 's'}.")
        html = self.rendered.get(etag)
        if html is None:
            summaries = await run_in_threadpool(self.edition_index.listed, offset=(number - 1) * ARCHIVE_PAGE,
                                                limit=ARCHIVE_PAGE)
            feeds = [{"name": t.name, "url": f"{root}/topics/{t.slug}.atom"} for t in self.settings.topics]
            html = self.environment.render("web/archive.html.j2", {**self.base_context(request),
                "editions": archive_list(summaries, root=root), "feeds": feeds, "page": number, "pages": pages,
                "newer_url": f"{root}/archive" + (f"?page={number - 1}" if number > 2 else "") if number > 1 else "",
                "older_url": f"{root}/archive?page={number + 1}" if number < pages else "",
            })
            self.remember(etag, html)
        return HTMLResponse(html, headers=headers)

    def remember(self, etag: str, body: str) -> None:
        """Keep a rendered archive page or feed under its ETag: the ETag names every input, so it stays right."""
        self.rendered[etag] = body
        while len(self.rendered) > _RENDERED_CACHE:
            self.rendered.popitem(last=False)

    async def archive_edition(self, request: Request) -> Response:
        """An edition's page: rendered from its snapshot once per template fingerprint and root, then stored."""
        slug = request.path_params["slug"]
        summary = await run_in_threadpool(self.edition_index.by_slug, slug)
        if summary is None or not summary.paper_count:
            raise PageError(404, "No such edition", "The archive has no edition at this address.")
        root = self.base_context(request)["root"]
        review = await run_in_threadpool(ReviewStore(self.editions.engine).get, summary.id)
        edits = "" if review is None else repr((review.pinned, review.dropped, review.note))
        variant = etag_of(self.environment.fingerprint, root, edits).strip('"')  # an editor's change: a new page
        key = f"{summary.id}:{variant}"
        stored = self.archive_cache.get(key)
        if stored is None:
            stored = await run_in_threadpool(self.edition_index.page, summary.id, variant)
        if stored is None:
            stored = await run_in_threadpool(self.render_edition, summary.id, variant, request)
        self.archive_cache[key] = stored
        self.archive_cache.move_to_end(key)
        while len(self.archive_cache) > _ARCHIVE_CACHE:
            self.archive_cache.popitem(last=False)
        etag, html = stored
        headers = {**validator_headers(etag, summary.created, "public, max-age=3600"),
                   "content-security-policy": ARCHIVE_CSP}
        if not_modified(request, etag, summary.created):
            return not_modified_response(headers)
        return HTMLResponse(html, headers=headers)

    def render_edition(self, edition_id: int, variant: str, request: Request) -> tuple[str, str]:
        edition = self.editions.get_by_id(edition_id)
        if edition is None:  # deleted between the two reads
            raise PageError(404, "No such edition", "The archive has no edition at this address.")
        edition = apply_review(edition, ReviewStore(self.editions.engine).get(edition_id))  # what readers got
        root = self.base_context(request)["root"]
        context = {**self.base_context(request), **edition_page_context(self.settings, edition, root=root)}
        html = self.environment.render("web/edition.html.j2", context)
        etag = etag_of(html)
        self.edition_index.store_page(edition_id, variant, etag=etag, html=html, now=self.clock())
        return etag, html

    async def topic_feed(self, request: Request) -> Response:
        """A topic's Atom feed: its newest ``FEED_ENTRIES`` papers from the index, with a validator."""
        slug = request.path_params["slug"]
        topic = next((t for t in self.settings.topics if t.slug == slug), None)
        if topic is None:
            raise PageError(404, "No such topic", "There is no topic at this address.")
        newest, cutoff = await run_in_threadpool(self.edition_index.feed_version, slug)
        etag = etag_of("feed", self.environment.fingerprint, slug, newest, FEED_ENTRIES)
        headers = validator_headers(etag, cutoff, "public, max-age=900")
        if not_modified(request, etag, cutoff):
            return not_modified_response(headers)
        xml = self.rendered.get(etag)
        if xml is None:
            entries = await run_in_threadpool(self.edition_index.feed, slug, limit=FEED_ENTRIES)
            xml = self.environment.render("web/topic.atom.j2", topic_feed_context(self.settings, topic, entries))
            self.remember(etag, xml)
        return Response(xml, media_type="application/atom+xml; charset=utf-8", headers=headers)

    async def healthz(self, request: Request) -> Response:
        """Only whether the database answers: a health probe must stay cheap however big the archive is."""
        try:
            await run_in_threadpool(ping, self.engine)
        except SQLAlchemyError as error:
            log.error("health check: database error: %s", error)
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})
