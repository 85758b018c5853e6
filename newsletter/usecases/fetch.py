"""Sources → papers store → topic matches: the `fetch` step as one library call.

Each source is fetched (concurrently, politely), parsed, merged into the store and its outcome recorded,
on its own: one failing source never stops the others. Whatever a source's document makes the parser or the
store raise becomes that source's error (one line, logged with the source), and only its safe state is saved.
Papers that are new or changed are matched to the topics afterwards; when the topic configuration changed
since the last run, every paper is matched again.

A document is parsed, stored and matched a chunk of papers at a time (issue 30: a 100,000-item listing), so its
papers are never all held: the parser hands on ``FETCH_CHUNK`` papers at a time and the store merges them;
the matching then reads the changed papers back by id (``refresh_matches``). Papers stored before a crash are
not lost to the matching: ``pending.begin_storing`` marks the store first, and the next run matches what the
mark covers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from newsletter.config import Settings, SourceSettings
from newsletter.errors import SourceError
from newsletter.matching.pending import begin_storing
from newsletter.records.papers import SourceReport
from newsletter.sources.fetching import FetchRequest, FetchResponse, fetch_all
from newsletter.sources.parsing import FeedChunk, parse_feed_chunks
from newsletter.sources.sanitize import clean_text
from newsletter.storage.papers import PaperStore, SourceState, UpsertCounts

log = logging.getLogger(__name__)

FETCH_CHUNK = 5000
"""Papers parsed and stored at a time: with the document, what a fetch holds whatever its number of items."""


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
    responses.reverse()  # popped in order: each document is let go once stored, before the topic matching
    reports: list[SourceReport] = []
    changed: dict[str, None] = {}
    begin_storing(store, now=now)
    for source, state in zip(sources, states, strict=True):
        report, changed_ids = _store_response(store, source, state, responses.pop(), now=now)
        reports.append(report)
        changed.update(dict.fromkeys(changed_ids))
    # imported only now, with every document let go: scikit-learn is a large part of a fetch's memory
    from newsletter.matching.refresh import refresh_matches

    refresh_matches(settings, store, paper_ids=list(changed))
    return reports


class _Tally:
    """One source's counts over its chunks, as if its papers had been stored at once: a paper counts once, as
    new when the first chunk that changed it inserted it; a reader's restart drops the counts of its chunks."""

    def __init__(self) -> None:
        self.fetched = self.skipped = 0
        self.warnings: list[str] = []
        self.changed: dict[str, bool] = {}
        """Ids changed so far, in order, and whether each was new."""

    def add(self, chunk: FeedChunk, upserted: UpsertCounts) -> None:
        if chunk.restart:
            self.fetched = self.skipped = 0
            self.warnings = []
        self.fetched += len(chunk.papers) + chunk.skipped
        self.skipped += chunk.skipped
        self.warnings += chunk.warnings
        for paper_id in upserted.changed:
            self.changed.setdefault(paper_id, paper_id in upserted.inserted)

    def report(self, source: str) -> SourceReport:
        new = sum(self.changed.values())
        return SourceReport(source, fetched=self.fetched, new=new, updated=len(self.changed) - new,
                            skipped=self.skipped, warnings=tuple(self.warnings))


def _counts(report: SourceReport) -> dict[str, int]:
    return {"fetched": report.fetched, "new": report.new, "updated": report.updated, "skipped": report.skipped}


def _store_response(
    store: PaperStore,
    source: SourceSettings,
    state: SourceState,
    response: FetchResponse | SourceError,
    *,
    now: datetime,
) -> tuple[SourceReport, list[str]]:
    """Parse and store one source's answer a chunk at a time; remember its validators and outcome for the next
    fetch. Returns the report and the ids of the papers it changed (stored ones, even when the source failed
    after some chunks: they are matched with the others)."""
    tally = _Tally()
    if isinstance(response, FetchResponse) and response.not_modified:
        report = SourceReport(source.name, not_modified=True)
        status = "not-modified"
    else:
        try:
            if isinstance(response, SourceError):
                raise response
            for chunk in parse_feed_chunks(source.kind, response.body or b"", source=source.name,
                                           include_cross=source.include_cross, content_type=response.content_type,
                                           size=FETCH_CHUNK):
                tally.add(chunk, store.upsert(chunk.papers, now=now))
        except Exception as exc:  # noqa: BLE001 - the one boundary per source: its document cannot stop the fetch
            error = exc if isinstance(exc, SourceError) else _unexpected(source.name, exc)
            log.info("%s", error)
            # a failure keeps the last good validators, success time and counts
            reason = clean_text(error.reason)  # no NUL or surrogate may reach the store: PostgreSQL refuses them
            store.record_fetch(dataclasses.replace(state, last_attempt=now, last_status="error", last_error=reason))
            return SourceReport(source.name, errors=(reason,)), list(tally.changed)
        report = tally.report(source.name)
        status = "ok"
    store.record_fetch(
        SourceState(source=source.name, etag=response.etag, last_modified=response.last_modified, last_attempt=now,
                    last_success=now, last_status=status, last_counts=_counts(report))
    )
    return report, list(tally.changed)


def _unexpected(source: str, exc: Exception) -> SourceError:
    """A bug or a limit this source's document hit: one short line, the traceback in the debug log."""
    log.debug("source %r: unexpected error", source, exc_info=exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return SourceError(source, f"could not parse or store the document: {type(exc).__name__}" +
                       (f": {text}" if text else ""))
