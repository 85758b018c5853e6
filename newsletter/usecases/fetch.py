"""Sources → papers store → topic matches: the `fetch` step as one library call.

Each source is fetched (concurrently, politely), parsed, merged into the store and its outcome recorded,
on its own: one failing source never stops the others. Whatever a source's document makes the parser or the
store raise becomes that source's error (one line, logged with the source), and only its safe state is saved.
Papers that are new or changed are matched to the topics afterwards; when the topic configuration changed
since the last run, every paper is matched again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from newsletter.config import Settings, SourceSettings
from newsletter.errors import SourceError
from newsletter.matching.refresh import refresh_matches
from newsletter.records.papers import Paper, SourceReport
from newsletter.sources.fetching import FetchRequest, FetchResponse, fetch_all
from newsletter.sources.parsing import parse_feed
from newsletter.sources.sanitize import clean_text
from newsletter.storage.papers import PaperStore, SourceState

log = logging.getLogger(__name__)



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
    changed: dict[str, Paper] = {}
    for source, state in zip(sources, states, strict=True):
        report, changed_papers = _store_response(store, source, state, responses.pop(), now=now)
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
            parsed = parse_feed(source.kind, response.body or b"", source=source.name,
                                include_cross=source.include_cross, content_type=response.content_type)
            upserted = store.upsert(parsed.papers, now=now)
        except Exception as exc:  # noqa: BLE001 - the one boundary per source: its document cannot stop the fetch
            error = exc if isinstance(exc, SourceError) else _unexpected(source.name, exc)
            log.info("%s", error)
            # a failure keeps the last good validators, success time and counts
            reason = clean_text(error.reason)  # no NUL or surrogate may reach the store: PostgreSQL refuses them
            store.record_fetch(dataclasses.replace(state, last_attempt=now, last_status="error", last_error=reason))
            return SourceReport(source.name, errors=(reason,)), {}
        changed = upserted.changed
        report = SourceReport(source.name, fetched=len(parsed.papers) + parsed.skipped, new=upserted.new,
                              updated=upserted.updated, skipped=parsed.skipped, warnings=parsed.warnings)
        status = "ok"
    store.record_fetch(
        SourceState(source=source.name, etag=response.etag, last_modified=response.last_modified, last_attempt=now,
                    last_success=now, last_status=status, last_counts=_counts(report))
    )
    return report, changed


def _unexpected(source: str, exc: Exception) -> SourceError:
    """A bug or a limit this source's document hit: one short line, the traceback in the debug log."""
    log.debug("source %r: unexpected error", source, exc_info=exc)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return SourceError(source, f"could not parse or store the document: {type(exc).__name__}" +
                       (f": {text}" if text else ""))
