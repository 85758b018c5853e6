"""The scheduled jobs as plain library functions: each does its work and says what it did, in words.

They run in a worker thread of `newsletter serve` (so the web app on the event loop stays responsive)
and never raise for an expected outcome: an empty edition or an unreachable source is a result to
record, not a crash. ``stop`` is set when `serve` is asked to stop: a send then stops claiming, releases
what it had queued and lets in-flight messages finish. With ``[workers] broker`` set, a send enqueues its
batches for the Celery workers instead and follows the ledger until every row was tried (``workers.py``).
"""

from __future__ import annotations

import asyncio
import threading
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.clock import Clock
from newsletter.config import Settings
from newsletter.delivery.pool import RunStats
from newsletter.delivery.sending import deliver_edition
from newsletter.editions.build import WEEKLY_WINDOW
from newsletter.rendering.links import signer_from_settings
from newsletter.service.approval import hold_for_approval, send_approved
from newsletter.service.stopping import watching
from newsletter.storage.editions import EditionStore
from newsletter.storage.fills import FillStore
from newsletter.storage.ledger import Ledger
from newsletter.storage.outbox import ConfirmationOutbox
from newsletter.storage.papers import PaperStore
from newsletter.storage.runs import RunStore
from newsletter.storage.webhook_outbox import WebhookOutbox
from newsletter.usecases.campaign import prepare
from newsletter.usecases.channels import post_channels, post_due_channels
from subscribers.rate_limit_store import CONFIRMATION_WINDOW, RateLimits
from subscribers.store import SubscriberStore


@dataclass(frozen=True)
class JobResult:
    status: str
    """``ok``, ``nothing`` (ran, had nothing to do: e.g. no new papers) or ``error``."""
    summary: str
    details: dict[str, Any] = field(default_factory=dict)




def fetch_job(settings: Settings, engine: Engine, *, clock: Clock, stop: threading.Event) -> JobResult:
    from newsletter.usecases.fetch import fetch_sources  # the matchers (scikit-learn): not for `status`

    reports = asyncio.run(fetch_sources(settings, PaperStore(engine), now=clock()))
    new = sum(r.new for r in reports)
    updated = sum(r.updated for r in reports)
    failed = [r for r in reports if r.failed]
    summary = f"fetched {len(reports)} sources: {new} new papers, {updated} updated"
    if failed:
        summary += "; failed: " + "; ".join(f"{r.source}: {r.errors[0]}" for r in failed)
    details = {"sources": {r.source: {"new": r.new, "updated": r.updated, "errors": list(r.errors)}
                           for r in reports}}
    status = "error" if reports and len(failed) == len(reports) else "ok"
    return JobResult(status, summary, details)


def _deliver(settings: Settings, engine: Engine, edition_id: int, *, clock: Clock,
             stop: threading.Event) -> RunStats:
    """This run's outcomes (not the edition's running totals: a retry that sent 1 says 1)."""
    if settings.workers.broker:  # Celery workers send: enqueue the due rows and follow them until tried
        from newsletter.delivery.workers import send_with_workers

        return send_with_workers(settings, engine, edition_id, clock=clock, stop=stop).stats()
    edition = EditionStore(engine).get_by_id(edition_id)
    assert edition is not None  # built before delivery starts

    async def main() -> RunStats:
        with watching(stop) as stopped:  # set from serve's signal handler, through this loop
            return await deliver_edition(settings, engine, edition, clock=clock, stop=stopped)

    return asyncio.run(main())


def _counts_text(counts: dict[str, int]) -> str:
    shown = [f"{counts[s]} {s}" for s in ("sent", "deferred", "failed", "ambiguous", "suppressed", "pending")
             if counts.get(s)]
    return ", ".join(shown) or "nothing to send"


def _delivered_counts(settings: Settings, engine: Engine, edition_id: int, *, clock: Clock,
                      stop: threading.Event) -> dict[str, int]:
    """Deliver an approved edition and give this run's counts (what ``send_approved`` reports)."""
    return _run_counts(_deliver(settings, engine, edition_id, clock=clock, stop=stop))


def _run_counts(stats: RunStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in ("sent", "deferred", "failed", "ambiguous", "suppressed")}


def _run_status(stats: RunStats) -> str:
    """``error`` when the run was halted, or when it tried messages and every one failed."""
    tried = stats.sent + stats.deferred + stats.failed + stats.ambiguous
    if stats.halt is not None or (tried and stats.failed == tried):
        return "error"
    return "ok"


def edition_job(settings: Settings, engine: Engine, *, frequency: str, clock: Clock,
                stop: threading.Event) -> JobResult:
    """Build today's edition of ``frequency`` (idempotent), fill its ledger and deliver it.

    With ``[schedule] approve`` the edition is only built; it waits for `newsletter edition approve`, and
    the next retry run sends it (``send_approved``).
    """
    if settings.schedule.approve:
        waiting = hold_for_approval(settings, engine, frequency=frequency, now=clock())  # type: ignore[arg-type]
        if waiting is not None:
            return JobResult("waiting", f"{waiting}: waiting for approval (`newsletter edition show {waiting}`, "
                                        f"then `newsletter edition approve {waiting}`)", {"edition": waiting})
    prepared = prepare(settings, engine, frequency=frequency, now=clock(), day=None,  # type: ignore[arg-type]
                       signer=signer_from_settings(settings))
    edition = prepared.edition
    if edition.is_empty:
        return JobResult("nothing", f"{edition.slug}: no email: {edition.empty_reason}",
                         {"edition": edition.slug, "papers": 0})
    stats = _deliver(settings, engine, edition.id, clock=clock, stop=stop)
    counts = _run_counts(stats)
    summary = (f"{edition.slug}: edition with {edition.paper_count} papers, {prepared.recipients} recipients in "
               f"{prepared.variants} variants; this run: {_counts_text(counts)}")
    if stats.halt:
        summary += f"; stopped: {stats.halt}"
    channels = {} if stats.halt else post_channels(settings, engine, edition, clock=clock)
    if channels:
        summary += "; channels: " + ", ".join(f"{name} {state}" for name, state in channels.items())
    details = {"edition": edition.slug, "papers": edition.paper_count, "counts": counts,
               "edition_counts": Ledger(engine).counts(edition.id), "channels": channels}
    return JobResult(_run_status(stats), summary, details)


def retry_job(settings: Settings, engine: Engine, *, clock: Clock, stop: threading.Event) -> JobResult:
    """Send approved editions not sent yet (``[schedule] approve``), then finish every unfinished edition:
    pending rows (a `serve` killed mid-send), lapsed claims, and deferred rows that are due. `serve` runs it
    at start too, so a restart completes what was cut off."""
    parts: list[str] = []
    details: dict[str, Any] = {}
    if settings.schedule.approve:
        for _edition_id, counts, slug in send_approved(settings, engine, clock=clock, stop=stop,
                                                      deliver=_delivered_counts):
            parts.append(f"{slug} (approved): {_counts_text(counts)}")
            details[slug] = counts
    resumed = _complete_fills(settings, engine, clock=clock, stop=stop)
    if resumed:
        parts.append("completed the ledger fill of " + ", ".join(resumed))
        details["fills_completed"] = resumed
    for slug, channels in post_due_channels(settings, engine, clock=clock).items():
        parts.append(f"{slug} channels: " + ", ".join(f"{name} {state}" for name, state in channels.items()))
        details[f"{slug} channels"] = channels
    due = Ledger(engine).editions_unfinished(now=clock())
    if not due and not parts:
        return JobResult("nothing", "no edition has deliveries waiting")
    if not due:
        return JobResult("ok", "; ".join(parts), details)
    editions = EditionStore(engine)
    status = "ok"
    for edition_id in due:
        if stop.is_set():
            break
        edition = editions.get_by_id(edition_id)
        if edition is None:
            continue
        stats = _deliver(settings, engine, edition_id, clock=clock, stop=stop)
        counts = _run_counts(stats)
        parts.append(f"{edition.slug}: {_counts_text(counts)}" + (f" (stopped: {stats.halt})" if stats.halt else ""))
        details[edition.slug] = counts
        if _run_status(stats) == "error":
            status = "error"
    return JobResult(status, "finished waiting deliveries; " + "; ".join(parts), details)


def _complete_fills(settings: Settings, engine: Engine, *, clock: Clock, stop: threading.Event) -> list[str]:
    """Finish each ledger fill a killed process left open (``FillStore``); the rows it adds are then sent
    with the edition's others. Returns the editions' slugs."""
    done: list[str] = []
    fills = FillStore(engine)
    for frequency, day in [*fills.unfinished(), *_died_before_their_fill(settings, engine, fills, clock=clock)]:
        if stop.is_set():
            break
        prepared = prepare(settings, engine, frequency=frequency, now=clock(), day=day,  # type: ignore[arg-type]
                           signer=signer_from_settings(settings))
        done.append(prepared.edition.slug)
    return done


def _died_before_their_fill(settings: Settings, engine: Engine, fills: FillStore, *,
                            clock: Clock) -> list[tuple[str, date]]:
    """Today's daily or weekly run that died (a killed `serve`) before its fill was even recorded: the
    scheduler counts it as run, so without this that edition would wait for the next day's window. With
    ``[schedule] approve`` such a run only builds the edition, which the next daily run does again."""
    if settings.schedule.approve:
        return []
    zone = zoneinfo.ZoneInfo(settings.newsletter.timezone)
    now = clock()
    today = now.astimezone(zone).date()
    wanted: list[tuple[str, date]] = []
    for run in RunStore(engine).died_since(("daily", "weekly"), since=now - timedelta(days=1)):
        if run.started.astimezone(zone).date() == today and not fills.known(run.job, today) \
                and (run.job, today) not in wanted:
            wanted.append((run.job, today))
    return wanted


def housekeeping_job(settings: Settings, engine: Engine, *, clock: Clock, stop: threading.Event) -> JobResult:
    now = clock()
    schedule = settings.schedule
    expired = SubscriberStore(engine).expire_pending(before=now - timedelta(days=schedule.unconfirmed_days))
    cutoff = now - timedelta(days=schedule.keep_days)
    editions = EditionStore(engine)
    horizon = now - longest_window(editions)
    pruned_runs = RunStore(engine).prune(before=cutoff)
    # the ledger's rows say which papers each reader received: kept while a new window can reach them
    pruned_rows = Ledger(engine).prune(before=min(cutoff, horizon))
    pruned_events = RateLimits(engine).prune(now=now)
    pruned_outbox = ConfirmationOutbox(engine).prune(before=now - CONFIRMATION_WINDOW)
    pruned_sent = editions.prune_sent_papers(before=horizon)
    pruned_hooks = WebhookOutbox(engine).prune(before=cutoff)
    summary = (f"deleted {expired} subscriptions unconfirmed for {schedule.unconfirmed_days} days; pruned "
               f"{pruned_runs} run records, {pruned_rows} delivery rows and {pruned_hooks} finished webhook "
               f"deliveries older than {schedule.keep_days} days, "
               f"{pruned_events} rate-limit events, {pruned_outbox} finished confirmation emails and "
               f"{pruned_sent} fill-time sent-paper records past the longest edition window")
    return JobResult("ok", summary, {"expired_pending": expired, "pruned_runs": pruned_runs,
                                     "pruned_deliveries": pruned_rows, "pruned_rate_events": pruned_events,
                                     "pruned_confirmations": pruned_outbox, "pruned_sent_papers": pruned_sent,
                                     "pruned_webhook_deliveries": pruned_hooks})


def longest_window(editions: EditionStore) -> timedelta:
    """How far back a new edition's window can reach: a week, or a longer daily window if one was built (a
    daily edition's window starts at the previous daily edition's cut-off, so it grows after a pause)."""
    return max(WEEKLY_WINDOW, editions.longest_window())


JOBS: dict[str, Callable[[Settings, Engine, Clock, threading.Event], JobResult]] = {
    "fetch": lambda s, e, c, stop: fetch_job(s, e, clock=c, stop=stop),
    "daily": lambda s, e, c, stop: edition_job(s, e, frequency="daily", clock=c, stop=stop),
    "weekly": lambda s, e, c, stop: edition_job(s, e, frequency="weekly", clock=c, stop=stop),
    "retry": lambda s, e, c, stop: retry_job(s, e, clock=c, stop=stop),
    "housekeeping": lambda s, e, c, stop: housekeeping_job(s, e, clock=c, stop=stop),
}
