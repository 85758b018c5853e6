"""`serve`, `worker` and `status`: long-running processes and what they did."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

if TYPE_CHECKING:
    pass

from newsletter.cli.app import App, console, pass_app
from newsletter.cli.output import term
from newsletter.cli.sending import print_workers
from newsletter.cli.status_lines import print_scheduler


@click.command()
@click.option("--host", help="Serve the web pages on this address (default: [web] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Serve the web pages on this port (default: [web] port).")
@pass_app
def serve(app: App, host: str | None, port: int | None) -> None:
    """Run the scheduler (fetch, daily and weekly editions, retries, housekeeping) and the web pages.

    With [inbound] domain set, the inbound listener (`newsletter inbound`) runs inside it too.

    Schedules come from [schedule]. Only one `serve` per database runs jobs (a database lease); a second
    one waits. A run missed while `serve` was down runs once on restart if it is within
    misfire_grace_seconds, and is recorded as skipped otherwise. SIGTERM/SIGINT: no new jobs, running
    ones finish cleanly (a send releases what it had queued), exit 0. Logs go to stderr; add `-v` for
    every job's result and `--log-format json` for JSON lines.
    """
    from newsletter.service.scheduler import Service

    logging.getLogger("newsletter").setLevel(logging.INFO)
    from newsletter.usecases.webhooks import check_secrets
    from newsletter.web.server import run_server

    settings, engine = app.settings, app.open_store().engine
    check_secrets(settings)  # a webhook without its signing secret: one line now, not a stopped web server
    service = Service(settings, engine)

    async def web() -> None:
        try:
            if settings.inbound.domain:  # the inbound listener lives and dies with the web pages
                from newsletter.inbound.listener import serve_inbound
                from newsletter.inbound.process import processor_for

                await asyncio.gather(run_server(settings, engine, host=host, port=port, handle_signals=False),
                                     serve_inbound(processor_for(settings, engine), settings.inbound))
            else:
                await run_server(settings, engine, host=host, port=port, handle_signals=False)
        except SystemExit as exit_:  # uvicorn exits the process when it cannot start; serve reports it instead
            raise OSError(f"uvicorn could not start (exit code {exit_.code})") from None

    asyncio.run(service.run(web=web))
    if service.failure is not None:
        raise click.ClickException(service.failure)


@click.command()
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Batches sent at once, in threads (default: [workers] concurrency).")
@pass_app
def worker(app: App, concurrency: int | None) -> None:
    """Run a Celery worker that sends the batches `send --workers` and `serve` enqueue ([workers] broker).

    Each batch is sent with the same SMTP pool and ledger rules as `send`, and acknowledged when done. Start
    one per core, on as many machines as you like: they share the PostgreSQL database and the queue.
    SIGTERM: finish the current batches, then exit; a worker killed outright loses nothing (its claims
    lapse after [delivery] lease_seconds and another worker sends them).
    """
    from newsletter.delivery.workers import run_worker

    logging.getLogger("newsletter").setLevel(logging.INFO)
    code = run_worker(app.settings, concurrency=concurrency)
    if code:
        raise click.exceptions.Exit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Sources' last fetch, recent editions and deliveries, what needs attention, next runs, subscribers."""
    from newsletter.service.status import status_view

    view = status_view(app.settings, app.open_store().engine, now=app.now())
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    _print_status(view)


def _print_status(view: dict[str, Any]) -> None:
    sources = Table(title="Sources")
    for column in ("source", "last fetch", "result", "error"):
        sources.add_column(column, overflow="fold")
    for s in view["sources"]:
        sources.add_row(term(s["name"]), s["last_attempt"] or "never", term(s["result"] or ""), term(s["error"] or ""))
    console.print(sources)
    editions = Table(title="Recent editions")
    for column in ("edition", "papers", "sent", "pending", "claimed", "deferred", "failed", "ambiguous", "note"):
        editions.add_column(column, overflow="fold")
    for e in view["editions"]:
        d = e["deliveries"]
        note = term(e["empty_reason"] or "") or ("UNFINISHED" if e.get("unfinished") else "")
        editions.add_row(term(e["slug"]), str(e["papers"]), *(str(d[state]) for state in (
            "sent", "pending", "claimed", "deferred", "failed", "ambiguous")), note)
    console.print(editions)
    for e in view["editions"]:
        if e.get("unfinished"):
            d = e["deliveries"]
            if not e.get("fill_finished", True):
                console.print(f"[yellow]unfinished[/yellow] {e['slug']}: its ledger fill was cut off; "
                              f"{e['not_in_ledger']} active readers have no delivery row yet; `serve` completes "
                              "it on its next retry run (and at start), or run `newsletter send`",
                              highlight=False, soft_wrap=True)
            console.print(f"[yellow]unfinished[/yellow] {e['slug']} (built {e['created']}): {d['pending']} pending, "
                          f"{d['claimed']} claimed, {d['deferred']} deferred; `serve` finishes it on its next retry "
                          "run, or run `newsletter send`", highlight=False, soft_wrap=True)
    for e in view["editions"]:
        if len(e["workers"]) > 1 or (e["workers"] and view.get("queue") is not None):
            print_workers(e["workers"], title=f"Per worker: {e['slug']}")
    if view.get("queue") is not None:
        queue = view["queue"]
        waiting = queue["waiting"] if queue["error"] is None else f"unknown ({term(queue['error'])})"
        console.print(f"queue {queue['name']}: {waiting} batches waiting for a worker", highlight=False,
                      soft_wrap=True)
    console.print(f"papers: {view['papers']} stored, {view['unmatched_papers']} match no topic (list them with "
                  "`newsletter papers --unmatched`; `newsletter topics suggest` clusters them)", highlight=False,
                  soft_wrap=True)
    for warning in view.get("topic_warnings", []):
        console.print(f"[yellow]warning[/yellow] {warning}", highlight=False, soft_wrap=True)
    attention = view["attention"]
    console.print(", ".join(f"{state}: {n}" for state, n in attention.items()), highlight=False)
    print_scheduler(view)
    console.print("subscribers: " + ", ".join(f"{n} {s}" for s, n in view["subscribers"].items()),
                  highlight=False)
    _print_inbound(view["inbound"])
    _print_channels(view)


def _print_channels(view: dict[str, Any]) -> None:
    for channel in view["channels"]:
        state = f"[red]PAUSED[/red] {term(channel['paused'])}" if channel["paused"] else "active"
        console.print(f"channel {term(channel['name'])}: {state}; last: {term(channel['last_result'] or 'never')}",
                      highlight=False, soft_wrap=True)
    for e in view["editions"]:
        for row in e["channels"]:
            why = f" ({term(row['last_message'])})" if row["last_message"] and row["state"] != "sent" else ""
            console.print(f"{e['slug']} → channel {term(row['channel'])}: {row['state']}{why}", highlight=False,
                          soft_wrap=True)
    for url, counts in view.get("webhooks", {}).items():
        failed = f", [red]{counts['failed']} given up[/red]" if counts["failed"] else ""
        console.print(f"webhook {term(url)}: {counts['delivered']} delivered, {counts['pending']} pending{failed}",
                      highlight=False, soft_wrap=True)


def _print_inbound(inbound: dict[str, Any]) -> None:
    """Mail that came back: counts of the last 30 days and each edition's rates beside Gmail's 0.3% line."""
    counts = inbound["last_30_days"]
    console.print("mail back (30 days): " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"),
                  highlight=False)
    if not inbound["editions"]:
        return
    rates = Table(title=f"Bounces and complaints (Gmail's complaint line: {inbound['complaint_line']:.1%})")
    for column in ("edition", "sent", "bounced", "bounce rate", "complained", "complaint rate"):
        rates.add_column(column, overflow="fold")
    for e in inbound["editions"]:
        flag = " OVER" if e["over_complaint_line"] else ""
        rates.add_row(e["slug"], str(e["sent"]), str(e["bounced"]), f"{e['bounce_rate']:.2%}", str(e["complained"]),
                      f"{e['complaint_rate']:.2%}{flag}")
    console.print(rates)
