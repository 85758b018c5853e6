"""The console's first page: the facts of `newsletter status` and the charts an operator would rather look at.

Everything `status` says comes from the same ``status_view``; the charts add the list's growth, papers per
day and per topic, the unmatched share, each recent edition's delivery outcome and bounce/complaint rates
against the 0.3% complaint line, and readers' votes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.config import Settings
from newsletter.service.inbound_status import BOUNCE_LINE, COMPLAINT_LINE
from newsletter.service.status import status_view
from newsletter.storage.console_reads import (
    edition_page,
    papers_per_day,
    readers_added_per_day,
    votes_per_day,
)
from newsletter.storage.papers import PaperStore
from newsletter.web.admin.charts import Chart, bar_chart, days, line_chart
from newsletter.web.admin.console import Console, Visit

CHART_DAYS = 90
CHART_EDITIONS = 20


def charts(settings: Settings, engine: Engine, status: dict[str, Any], *, now: datetime,
           counts_of: Callable[[list[int]], dict[int, dict[str, int]]]) -> list[Chart]:
    start = (now - timedelta(days=CHART_DAYS - 1)).date()
    since = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    span = days(start, now.date())
    before, added = readers_added_per_day(engine, since=since)
    total, growth = before, []
    for day in span:
        total += added.get(day.isoformat(), 0)
        growth.append((day.isoformat(), float(total)))
    per_day = papers_per_day(engine, since=since)
    names = {t.slug: t.name for t in settings.topics}
    per_topic = PaperStore(engine).match_counts()
    topic_series = [(names.get(slug, slug), float(count)) for slug, count in sorted(per_topic.items())]
    papers, unmatched = status["papers"], status["unmatched_papers"]
    if papers:
        topic_series.append(("unmatched", float(unmatched)))
    recent = list(reversed(edition_page(engine, limit=CHART_EDITIONS, offset=0)))
    counts = counts_of([e.id for e in recent])
    rates = {r["slug"]: r for r in status["inbound"]["editions"]}
    complaint = [(e.slug, float(rates[e.slug]["complaint_rate"]) if e.slug in rates else 0.0) for e in recent]
    bounce = [(e.slug, float(rates[e.slug]["bounce_rate"]) if e.slug in rates else 0.0) for e in recent]
    problems = [(e.slug, float(counts[e.id]["deferred"] + counts[e.id]["failed"])) for e in recent]
    votes = votes_per_day(engine, since=since)
    unmatched_title = (f"Papers per topic ({unmatched / papers:.0%} of {papers:,} papers unmatched)" if papers
                       else "Papers per topic")
    return [
        line_chart(f"Readers over time (everyone added, last {CHART_DAYS} days)", growth),
        bar_chart(f"New papers per day (last {CHART_DAYS} days)",
                  [(d.isoformat(), float(per_day.get(d.isoformat(), 0))) for d in span]),
        bar_chart(unmatched_title, topic_series),
        bar_chart("Complaint rate per edition (line: 0.3%)", complaint, alert_at=COMPLAINT_LINE,
                  rule=(COMPLAINT_LINE, "0.3%"), percent=True),
        bar_chart("Bounce rate per edition (line: 2%)", bounce, alert_at=BOUNCE_LINE, rule=(BOUNCE_LINE, "2%"),
                  percent=True),
        bar_chart("Deferred or failed deliveries per edition", problems, alert_at=1.0),
        bar_chart(f"Votes per day, more and less like this (last {CHART_DAYS} days)",
                  [(d.isoformat(), float(sum(votes.get(d.isoformat(), (0, 0))))) for d in span]),
    ]


def overview_context(console: Console, *, now: datetime) -> dict[str, Any]:
    settings, engine = console.settings, console.engine
    status = status_view(settings, engine, now=now)
    recent = edition_page(engine, limit=5, offset=0)
    counts = console.edition_counts([e.id for e in recent])
    return {"status": status, "charts": charts(settings, engine, status, now=now, counts_of=console.edition_counts),
            "recent": [{"row": e, "counts": counts[e.id]} for e in recent], "section": "overview",
            "complaint_line": COMPLAINT_LINE}


def overview_page(console: Console) -> Any:
    async def overview(request: Request, visit: Visit) -> Response:
        context = await run_in_threadpool(console.overview.get, "overview",
                                          lambda: overview_context(console, now=console.now()))
        return console.render(request, "overview", context, visit=visit)

    return overview
