"""Sources → papers store → topic matches: the `fetch` step as one library call.

Each source is fetched (concurrently, politely), parsed, merged into the store and its outcome recorded,
on its own: one failing source never stops the others. Papers that are new or changed are matched to the
topics afterwards; when the topic configuration changed since the last run, every paper is matched again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from newsletter.config import Settings, SourceSettings
from newsletter.errors import SourceError
from newsletter.matching.examples import resolve_examples, with_feedback
from newsletter.matching.matcher import build_matcher
from newsletter.sources.fetching import FetchRequest, FetchResponse, fetch_all
from newsletter.sources.parsing import parse_feed
from newsletter.sources.records import Paper, SourceReport
from newsletter.storage.embeddings import EmbeddingStore
from newsletter.storage.papers import PaperStore, SourceState
from subscribers.feedback import FeedbackStore

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


def _counts(report: SourceReport) -> dict[str, int]:
    return {"fetched": report.fetched, "new": report.new, "updated": report.updated, "skipped": report.skipped}


def _store_response(
    store: PaperStore,
    source: SourceSettings,
    state: SourceState,
    response: FetchResponse | SourceError,
    *,
    now: datetime,
) -> tuple[SourceReport, dict[str, Paper]]:
    """Parse and store one source's answer; remember its validators and outcome for the next fetch."""
    changed: dict[str, Paper] = {}
    if isinstance(response, FetchResponse) and response.not_modified:
        report = SourceReport(source.name, not_modified=True)
        status = "not-modified"
    else:
        try:
            if isinstance(response, SourceError):
                raise response
            parsed = parse_feed(
                source.kind, response.body or b"", source=source.name, include_cross=source.include_cross
            )
        except SourceError as error:
            log.info("%s", error)
            # a failure keeps the last good validators, success time and counts
            store.record_fetch(dataclasses.replace(state, last_attempt=now, last_status="error",
                                                   last_error=error.reason))
            return SourceReport(source.name, errors=(error.reason,)), {}
        upserted = store.upsert(parsed.papers, now=now)
        changed = upserted.changed
        report = SourceReport(source.name, fetched=len(parsed.papers) + parsed.skipped, new=upserted.new,
                              updated=upserted.updated, skipped=parsed.skipped, warnings=parsed.warnings)
        status = "ok"
    store.record_fetch(
        SourceState(source=source.name, etag=response.etag, last_modified=response.last_modified, last_attempt=now,
                    last_success=now, last_status=status, last_counts=_counts(report))
    )
    return report, changed


def refresh_matches(settings: Settings, store: PaperStore, *, papers: Sequence[Paper] = ()) -> int:
    """Match the given (just stored) papers; every stored paper instead when the topics or the method changed.

    Uses the matcher of ``[matching] method``; the `embedding` one reuses stored paper vectors. Returns how
    many papers were matched.
    """
    cache = EmbeddingStore(store.engine)
    matcher = build_matcher(settings.matching, cache=cache, config_path=str(settings.config_path))
    fingerprint = matcher.fingerprint(settings.topics)
    background: list[Paper] = []
    if store.get_meta(FINGERPRINT_KEY) != fingerprint:
        papers = store.papers()
    elif papers:
        background = store.papers(limit=IDF_BACKGROUND_PAPERS) if matcher.uses_background else []
    else:
        return 0
    votes = FeedbackStore(store.engine).topic_votes()
    examples = with_feedback(store, resolve_examples(store, settings.topics), votes)
    matches = matcher.match(papers, settings.topics, background=background, examples=examples)
    store.replace_matches([p.paper_id for p in papers], matches)
    store.set_meta(FINGERPRINT_KEY, fingerprint)
    return len(papers)
