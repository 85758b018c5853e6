"""Sources → papers store → topic matches: the `fetch` step as one library call.

Each source is fetched (concurrently, politely), parsed, merged into the store and its outcome recorded,
on its own: one failing source never stops the others. Papers that are new or changed are matched to the
topics afterwards; when the topic configuration changed since the last run, every paper is matched again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from newsletter.config import Settings, SourceSettings
from newsletter.errors import SourceError
from newsletter.fetching import FetchRequest, FetchResponse, fetch_all
from newsletter.models import Paper, SourceReport
from newsletter.parsing import parse_feed
from newsletter.store import PaperStore, SourceState
from newsletter.topics import match_papers, topics_fingerprint

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "topics_fingerprint"
IDF_BACKGROUND_PAPERS = 2000
"""Recent stored papers that lend their words to the IDF weights when only a few papers are matched."""


def select_sources(settings: Settings, names: Sequence[str] = ()) -> list[SourceSettings]:
    return [settings.source(name) for name in names] if names else list(settings.sources)


async def fetch_sources(
    settings: Settings,
    store: PaperStore,
    *,
    names: Sequence[str] = (),
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[SourceReport]:
    """Fetch the named sources (all when none are named) and return one report per source, in order."""
    sources = select_sources(settings, names)
    now = now or datetime.now(UTC)
    states = [store.source_state(s.name) for s in sources]
    requests = [
        FetchRequest(source=s.name, url=s.url, etag=st.etag, last_modified=st.last_modified)
        for s, st in zip(sources, states, strict=True)
    ]
    responses = await fetch_all(requests, settings=settings.fetch, client=client)
    reports: list[SourceReport] = []
    changed: dict[str, Paper] = {}
    for source, state, response in zip(sources, states, responses, strict=True):
        report, changed_papers = _store_response(store, source, state, response, now=now)
        reports.append(report)
        changed.update(changed_papers)
    refresh_matches(settings, store, papers=list(changed.values()))
    return reports


def _store_response(
    store: PaperStore,
    source: SourceSettings,
    state: SourceState,
    response: FetchResponse | SourceError,
    *,
    now: datetime,
) -> tuple[SourceReport, dict[str, Paper]]:
    if isinstance(response, FetchResponse) and response.not_modified:
        store.record_fetch(
            SourceState(
                source=source.name,
                etag=response.etag,
                last_modified=response.last_modified,
                last_attempt=now,
                last_success=now,
                last_status="not-modified",
                last_counts={"fetched": 0, "new": 0, "updated": 0, "skipped": 0},
            )
        )
        return SourceReport(source.name, not_modified=True), {}
    try:
        if isinstance(response, SourceError):
            raise response
        parsed = parse_feed(
            source.kind, response.body or b"", source=source.name, include_cross=source.include_cross
        )
    except SourceError as error:
        log.info("%s", error)
        store.record_fetch(
            SourceState(
                source=source.name,
                etag=state.etag,
                last_modified=state.last_modified,
                last_attempt=now,
                last_success=state.last_success,
                last_status="error",
                last_error=error.reason,
                last_counts=state.last_counts,
            )
        )
        return SourceReport(source.name, errors=(error.reason,)), {}
    counts = store.upsert(parsed.papers, now=now)
    report = SourceReport(
        source.name,
        fetched=len(parsed.papers) + parsed.skipped,
        new=counts.new,
        updated=counts.updated,
        skipped=parsed.skipped,
        warnings=parsed.warnings,
    )
    store.record_fetch(
        SourceState(
            source=source.name,
            etag=response.etag,
            last_modified=response.last_modified,
            last_attempt=now,
            last_success=now,
            last_status="ok",
            last_counts={"fetched": report.fetched, "new": report.new, "updated": report.updated,
                         "skipped": report.skipped},
        )
    )
    return report, counts.changed


def refresh_matches(settings: Settings, store: PaperStore, *, papers: Sequence[Paper] = ()) -> int:
    """Match the given (just stored) papers; every stored paper instead when the topics changed.

    Returns how many papers were matched.
    """
    fingerprint = topics_fingerprint(settings.topics, settings.matching.similarity_threshold)
    background: list[Paper] = []
    if store.get_meta(FINGERPRINT_KEY) != fingerprint:
        papers = store.papers()
    elif papers:
        background = store.papers(limit=IDF_BACKGROUND_PAPERS)
    else:
        return 0
    matches = match_papers(
        papers, settings.topics, threshold=settings.matching.similarity_threshold, background=background
    )
    store.replace_matches([p.paper_id for p in papers], matches)
    store.set_meta(FINGERPRINT_KEY, fingerprint)
    return len(papers)
