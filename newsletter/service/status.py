"""`newsletter status`: what happened, what is pending and what comes next, as plain data.

Answers "the job succeeded but no email came" without reading logs: each source's last fetch, the last
editions with their delivery counts (or why they were empty), deliveries needing attention, the next
scheduled runs, the recent runs in words, and the subscriber list by status.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.matching.coverage import store_warnings
from newsletter.service.channel_status import channels_view, edition_channel_rows
from newsletter.service.inbound_status import inbound_view
from newsletter.service.status_runs import awaiting_approval, collapsed_runs, lease_view
from newsletter.service.triggers import LEASE_NAME, next_runs
from newsletter.storage.editions import EditionStore
from newsletter.storage.fills import FillStore
from newsletter.storage.ledger import Ledger
from newsletter.storage.papers import PaperStore
from newsletter.storage.runs import RunStore
from newsletter.storage.webhook_outbox import WebhookOutbox
from subscribers.store import SubscriberStore


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_view(settings: Settings, engine: Engine, *, now: datetime, editions: int = 5) -> dict[str, Any]:
    papers, ledger = PaperStore(engine), Ledger(engine)
    states = {s.source: s for s in papers.source_states()}
    sources = []
    for source in settings.sources:
        state = states.get(source.name)
        sources.append({
            "name": source.name,
            "last_attempt": _iso(state.last_attempt) if state else None,
            "last_success": _iso(state.last_success) if state else None,
            "result": state.last_status if state else "never fetched",
            "error": state.last_error if state else None,
            "counts": dict(state.last_counts or {}) if state else {},
        })
    recent_editions = []
    late = timedelta(minutes=settings.delivery.unfinished_after_minutes)
    fills = FillStore(engine)
    not_in_ledger_total = 0
    for edition in EditionStore(engine).editions(limit=editions):
        counts = ledger.counts(edition.id)
        open_rows = counts["pending"] + counts["claimed"] + counts["deferred"]
        # a fill begun and not finished: readers may have no row yet, whatever the rows say
        not_in_ledger = _not_in_ledger(engine, ledger, edition.id, edition.frequency) \
            if fills.is_unfinished(edition.frequency, edition.date) else None
        not_in_ledger_total += not_in_ledger or 0
        recent_editions.append({
            "slug": edition.slug,
            "frequency": edition.frequency,
            "date": edition.date.isoformat(),
            "created": _iso(edition.created),
            "papers": edition.paper_count,
            "empty_reason": edition.empty_reason,
            "deliveries": counts,
            "unfinished": not_in_ledger is not None
            or (bool(open_rows) and edition.created is not None and now - edition.created > late),
            "fill_finished": not_in_ledger is None,
            "not_in_ledger": not_in_ledger or 0,
            "workers": ledger.by_worker(edition.id),
            "channels": edition_channel_rows(engine, edition.id),
        })
    scheduler = lease_view(engine, LEASE_NAME, now=now, duration=timedelta(seconds=settings.schedule.lease_seconds))
    return {
        "sources": sources,
        "editions": recent_editions,
        "attention": {**ledger.totals(states=("pending", "claimed", "deferred", "ambiguous")),
                      "not_in_ledger": not_in_ledger_total},
        # next runs only while a `serve` holds the lease: nothing runs otherwise
        "schedule": {name: _iso(when) for name, when in next_runs(settings, now=now).items()}
        if scheduler["running"] else {},
        "scheduler": scheduler,
        "runs": collapsed_runs(RunStore(engine).recent(limit=200)),
        "awaiting_approval": awaiting_approval(settings, engine),
        "subscribers": SubscriberStore(engine).counts_by_status(),
        "papers": papers.count_papers(),
        "unmatched_papers": papers.count_unmatched(),
        "topic_warnings": store_warnings(settings.topics, settings.matching, papers),
        "queue": _queue(settings),
        "inbound": inbound_view(engine, now=now, editions=editions),
        "channels": channels_view(settings, engine),
        "webhooks": _webhooks(settings, engine),
    }


def _webhooks(settings: Settings, engine: Engine) -> dict[str, dict[str, int]]:
    """Per configured [[webhooks]] URL: its outbox rows delivered, pending (waiting or being retried), failed."""
    counts = WebhookOutbox(engine).counts() if settings.webhooks else {}
    return {w.url: counts.get(w.url, {"pending": 0, "delivered": 0, "failed": 0}) for w in settings.webhooks}


def _not_in_ledger(engine: Engine, ledger: Ledger, edition_id: int, frequency: str) -> int:
    """Active readers of the edition's frequency without a ledger row (some may get no email: nothing new)."""
    have = ledger.subscribers_with_rows(edition_id)
    active = SubscriberStore(engine).active_id_list(frequency=frequency)  # type: ignore[arg-type]
    return len(set(active) - have)


def _queue(settings: Settings) -> dict[str, Any] | None:
    """With Celery workers ([workers] broker): batches waiting in the queue; None without workers."""
    if not settings.workers.broker:
        return None
    from newsletter.delivery.workers import queue_status

    return queue_status(settings)
