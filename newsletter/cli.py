"""The `newsletter` command: thin click commands over library functions.

Every command parses its options, calls one library function and prints the result. Library errors
(``NewsletterError``) become a one-line ``Error: …`` and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from newsletter import __version__
from newsletter.cli_subscribers import subscribers as subscribers_group
from newsletter.cli_subscribers import web as web_command
from newsletter.cli_topics import evaluate as topics_evaluate
from newsletter.cli_topics import suggest as topics_suggest
from newsletter.config import CONFIG_ENV, DEFAULT_CONFIG, Settings, load_settings
from newsletter.db import open_database
from newsletter.errors import NewsletterError
from newsletter.logs import configure_logging
from newsletter.models import SourceReport
from newsletter.store import PaperStore
from subscribers.errors import SubscribersError

if TYPE_CHECKING:
    from newsletter.campaign import Plan
    from newsletter.send_run import Progress as SendProgress
    from newsletter.sending import SendReport


class App:
    """What every command needs, loaded on first use so `--help` works without a config file."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def store(self) -> PaperStore:
        return PaperStore(open_database(self.settings.newsletter.database_url))

    def now(self) -> datetime:
        return datetime.now(UTC)


class NewsletterGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NewsletterError, SubscribersError) as error:
            raise click.ClickException(str(error)) from None


pass_app = click.make_pass_decorator(App)
console = Console()


@click.group(cls=NewsletterGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    default=DEFAULT_CONFIG,
    show_default=True,
    help=f"Config file (also read from ${CONFIG_ENV}).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log details of every step.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines for people, or JSON lines for a log collector.")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: bool, log_format: str) -> None:
    """Trending-papers newsletter: fetch papers, group them by topic, email them to subscribers."""
    configure_logging(level=logging.INFO if verbose else logging.WARNING, json_lines=log_format == "json")
    ctx.obj = App(config_path)


def _print_fetch_table(reports: list[SourceReport]) -> None:
    table = Table(title="Fetched sources")
    for column in ("source", "fetched", "new", "updated", "skipped", "errors"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for report in reports:
        errors = str(len(report.errors)) if report.errors else ("not modified" if report.not_modified else "0")
        table.add_row(report.source, str(report.fetched), str(report.new), str(report.updated), str(report.skipped),
                      errors)
    console.print(table)
    for report in reports:
        for warning in report.warnings:
            console.print(f"[yellow]warning[/yellow] {report.source}: {warning}", highlight=False, soft_wrap=True)
        for error in report.errors:
            console.print(f"[red]error[/red] {report.source}: {error}", highlight=False, soft_wrap=True)


@cli.command()
@click.option("--source", "sources", multiple=True, metavar="NAME", help="Fetch only this source (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@pass_app
def fetch(app: App, sources: tuple[str, ...], as_json: bool) -> None:
    """Download every source, store new and updated papers and match them to topics.

    Prints one row per source: entries fetched, papers new and updated, entries skipped (replacements,
    entries without an id) and errors. Exits non-zero only when every source failed.
    """
    from newsletter.ingest import fetch_sources  # scikit-learn: imported when used, not for --help

    with console.status("Fetching sources…", spinner="dots") if not as_json else _nothing():
        reports = asyncio.run(fetch_sources(app.settings, app.store, names=sources))
    if as_json:
        click.echo(json.dumps({"sources": [_report_json(r) for r in reports]}, indent=2))
    else:
        _print_fetch_table(reports)
    if reports and all(r.failed for r in reports):
        raise click.ClickException("every source failed")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _report_json(report: SourceReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "fetched": report.fetched,
        "new": report.new,
        "updated": report.updated,
        "skipped": report.skipped,
        "not_modified": report.not_modified,
        "errors": list(report.errors),
        "warnings": list(report.warnings),
    }


def _since(app: App, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(app.settings.newsletter.timezone))
    return value


_DATE = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"])


@cli.command()
@click.option("--since", type=_DATE, help="Only papers first seen at or after DATE (in the newsletter's time zone).")
@click.option("--topic", metavar="SLUG", help="Only papers matched to this topic.")
@click.option("--unmatched", is_flag=True, help="Only papers that match no topic.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@pass_app
def papers(app: App, since: datetime | None, topic: str | None, unmatched: bool, as_json: bool) -> None:
    """List stored papers, newest first, with trending score and why they match their topics."""
    from newsletter.ingest import refresh_matches
    from newsletter.reports import papers_view

    refresh_matches(app.settings, app.store)
    view = papers_view(app.settings, app.store, now=app.now(), since=_since(app, since), topic=topic,
                       unmatched=unmatched)
    if as_json:
        click.echo(json.dumps(view.as_json(), indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{len(view.papers)} papers")
    table.add_column("id")
    table.add_column("title", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("topics", overflow="fold")
    for paper in view.papers:
        topics = ", ".join(t["slug"] for t in paper["topics"]) or "—"
        table.add_row(paper["id"], paper["title"], f"{paper['trending']['score']:.2f}", topics)
    console.print(table)


@cli.group(cls=NewsletterGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.option("--top", default=3, show_default=True, help="Papers shown per topic.")
@click.pass_context
def topics(ctx: click.Context, as_json: bool, top: int) -> None:
    """Per topic: how many papers match, the best ones and why; and how many match nothing."""
    from newsletter.ingest import refresh_matches
    from newsletter.reports import topics_view

    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None  # set by the group callback
    refresh_matches(app.settings, app.store)
    view = topics_view(app.settings, app.store, now=app.now(), top=top)
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    for topic in view["topics"]:
        console.print(f"[bold]{topic['name']}[/bold] ({topic['slug']}): {topic['count']} papers", highlight=False)
        for paper in topic["top"]:
            console.print(f"  • {paper['title']} [dim]({paper['id']})[/dim]", highlight=False)
            console.print(f"    [dim]{'; '.join(paper['reasons'])}[/dim]", highlight=False)
    console.print(
        f"{view['unmatched']['count']} of {view['papers']} papers match no topic "
        "(list them with `newsletter papers --unmatched`).",
        highlight=False,
    )


@cli.command()
@click.option("--subscriber", "subscriber_email", metavar="EMAIL", help="Preview this subscriber's email.")
@click.option("--topics", metavar="A,B", help="Preview for a stand-in reader of these topics (default: all).")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True)
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Edition date (default: today).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="preview",
              show_default=True, help="Folder for the .html, .txt and .eml files.")
@pass_app
def preview(app: App, subscriber_email: str | None, topics: str | None, frequency: Literal["daily", "weekly"],
            day: datetime | None, out_dir: Path) -> None:
    """Write one reader's email for an edition as .html, .txt and .eml, exactly as it would be sent.

    Uses the stored edition if it was already sent; otherwise computes it as it would be built now,
    without storing it (a preview never freezes an edition). Sends nothing and records nothing.
    """
    from newsletter.preview import preview as make_preview  # imports Premailer: only when needed

    slugs = [t.strip() for t in topics.split(",") if t.strip()] if topics is not None else None
    result = make_preview(app.settings, app.store, out_dir=out_dir, now=app.now(), subscriber_email=subscriber_email,
                          topics=slugs, frequency=frequency, day=day.date() if day else None)
    if result.no_email is not None:
        click.echo(f"{result.edition.slug}: no email ({result.no_email})")
        return
    for path in (result.html_path, result.text_path, result.eml_path):
        click.echo(str(path))
    moved = f", {result.hidden} more on the web" if result.hidden else ""
    click.echo(f"HTML size: {result.html_bytes:,} bytes; {result.papers} papers{moved}; subject: {result.subject}")
    if not app.settings.email.postal_address:
        click.echo("warning: [email] postal_address is empty; bulk email needs the sender's postal address")


def _print_plan(planned: Plan) -> None:
    edition = planned.edition
    if edition.is_empty:
        console.print(f"{edition.slug}: nothing would be sent ({edition.empty_reason})", highlight=False,
                      soft_wrap=True)
        return
    table = Table(title=f"Dry run of {edition.slug}: nothing sent, nothing recorded")
    for column in ("readers", "papers", "HTML bytes", "subject"):
        table.add_column(column, justify="left" if column == "subject" else "right")
    for variant in sorted(planned.variants, key=lambda v: -v.readers):
        table.add_row(str(variant.readers), str(variant.papers), f"{variant.html_bytes:,}", variant.subject)
    console.print(table)
    console.print(
        f"{planned.recipients} emails in {len(planned.variants)} distinct variants to {planned.subscribers} "
        f"subscribers; {planned.nothing_new} have nothing new; {planned.already_queued} already in the ledger",
        highlight=False, soft_wrap=True,
    )


def _print_send_report(result: SendReport) -> None:
    prepared = result.prepared
    edition = prepared.edition
    if edition.is_empty:
        console.print(f"{edition.slug}: nothing to send ({edition.empty_reason})", highlight=False, soft_wrap=True)
        return
    console.print(
        f"{edition.slug}: {prepared.recipients} recipients of {prepared.subscribers} subscribers, "
        f"{prepared.variants} distinct emails ({prepared.rendered} rendered now); "
        f"{prepared.nothing_new} subscribers had nothing new",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title=f"Delivery of {edition.slug}")
    for column in ("sent", "deferred", "failed", "ambiguous", "suppressed", "pending"):
        table.add_column(column, justify="right")
    counts = result.counts
    table.add_row(*(str(counts.get(c, 0)) for c in ("sent", "deferred", "failed", "ambiguous", "suppressed",
                                                     "pending")))
    console.print(table)
    stats = result.stats
    console.print(f"this run: {stats.sent} sent, {stats.deferred} deferred, {stats.failed} failed, "
                  f"{stats.ambiguous} ambiguous, {stats.suppressed} suppressed, {stats.released} released",
                  highlight=False, soft_wrap=True)
    for row in result.ambiguous:
        console.print(f"[yellow]ambiguous[/yellow] {row['email']}: {row['message']} (not resent; check the relay's "
                      "log before resending by hand)", highlight=False, soft_wrap=True)
    if result.live_claims:
        console.print(f"{result.live_claims} messages are held by another live `send`", highlight=False, soft_wrap=True)
    if result.enqueued is not None:
        again = f"; {result.requeued} enqueued again after their worker stopped" if result.requeued else ""
        console.print(f"enqueued {result.enqueued} messages for the workers{again}", highlight=False, soft_wrap=True)
        if not result.waited:
            console.print("not waiting for the workers: they go on; `newsletter status` shows their progress",
                          highlight=False, soft_wrap=True)
    if result.workers and (result.enqueued is not None or len(result.workers) > 1):
        _print_workers(result.workers)


_WORKER_STATES = ("sent", "deferred", "failed", "ambiguous", "suppressed", "claimed")


def _print_workers(workers: dict[str, dict[str, int]], title: str = "Per worker") -> None:
    table = Table(title=title)
    table.add_column("worker", overflow="fold")
    for column in _WORKER_STATES:
        table.add_column(column, justify="right")
    for name, states in sorted(workers.items()):
        table.add_row(name, *(str(states.get(state, 0)) for state in _WORKER_STATES))
    console.print(table)


@cli.command()
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True)
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Edition date (default: today).")
@click.option("--dry-run", is_flag=True, help="Render and count what would be sent; send and record nothing.")
@click.option("--to", "to_address", metavar="EMAIL",
              help="Send a test copy of the most common email to EMAIL only; the ledger is not touched.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages in this run.")
@click.option("--processes", type=click.IntRange(min=1), help="Sending processes (default: [delivery] processes).")
@click.option("--workers", "use_workers", is_flag=True,
              help="Enqueue batches for the Celery workers ([workers] broker, `newsletter worker`) instead of "
                   "sending from this process; waits until every message was tried.")
@click.option("--no-wait", is_flag=True, help="With --workers: exit once the batches are enqueued.")
@pass_app
def send(app: App, frequency: Literal["daily", "weekly"], day: datetime | None, dry_run: bool,
         to_address: str | None, limit: int | None, processes: int | None, use_workers: bool, no_wait: bool) -> None:
    """Build the edition if needed, fill the delivery ledger and send, with progress and a summary.

    Safe to run again: it resumes, never sends a message twice, and never resends one whose delivery is
    ambiguous (listed at the end). SIGINT/SIGTERM stop claiming, let in-flight messages finish and exit.
    With --workers the workers send; SIGINT/SIGTERM stop waiting for them, not them.
    """
    from newsletter.campaign import plan
    from newsletter.send_run import run_send, send_test_copy

    when = day.date() if day else None
    if dry_run and to_address:
        raise click.UsageError("--dry-run and --to do not go together")
    if use_workers and (limit or processes or dry_run or to_address):
        raise click.UsageError("--workers does not go with --limit, --processes, --dry-run or --to")
    if no_wait and not use_workers:
        raise click.UsageError("--no-wait goes with --workers")
    if dry_run:
        planned = plan(app.settings, app.store.engine, frequency=frequency, now=app.now(), day=when)
        _print_plan(planned)
        return
    if to_address:
        planned, chosen, where = send_test_copy(app.settings, app.store.engine, frequency=frequency, to=to_address,
                                                day=when)
        console.print(f"sent a test copy of {planned.edition.slug} ({chosen.papers} papers, the email of "
                      f"{chosen.readers} readers) to {to_address} via {where}", highlight=False, soft_wrap=True)
        return
    progress = Progress(TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=True)
    started = time.monotonic()
    with progress:
        task = progress.add_task("send", total=None, rate="")

        def update(state: SendProgress) -> None:
            elapsed = max(1e-6, time.monotonic() - started)
            progress.update(task, total=state.total, completed=state.done, rate=f"{state.done / elapsed:,.0f} msg/s")

        result = run_send(app.settings, app.store.engine, frequency=frequency, day=when, limit=limit,
                          processes=processes, workers=use_workers, wait=not no_wait, on_progress=update)
    _print_send_report(result)


@cli.command()
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path),
              help="Work here instead of a new temporary folder.")
def demo(folder: Path | None) -> None:
    """Run the whole pipeline offline: bundled real feeds, sample subscribers, a local SMTP server.

    Fetches the feeds shipped with the project, builds today's daily edition, renders it once per distinct
    email and delivers it over real SMTP to an embedded server on 127.0.0.1 that stores a Maildir. Prints
    the delivery summary and the paths of the received messages. Needs no network and no config file.
    """
    from newsletter.demo import run_demo

    result = run_demo(folder=folder, say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    _print_send_report(result.send)
    console.print(f"received {len(result.received)} messages in {result.maildir}:", highlight=False)
    for path in result.received:
        console.print(f"  {path}", highlight=False, soft_wrap=True)


@cli.command()
@pass_app
def serve(app: App) -> None:
    """Run the scheduler (fetch, daily and weekly editions, retries, housekeeping) and the web pages.

    Schedules come from [schedule]. Only one `serve` per database runs jobs (a database lease); a second
    one waits. A run missed while `serve` was down runs once on restart if it is within
    misfire_grace_seconds, and is recorded as skipped otherwise. SIGTERM/SIGINT: no new jobs, running
    ones finish cleanly (a send releases what it had queued), exit 0. Logs go to stderr; add `-v` for
    every job's result and `--log-format json` for JSON lines.
    """
    from newsletter.scheduler import Service

    logging.getLogger("newsletter").setLevel(logging.INFO)
    from newsletter.web import run_server

    settings, engine = app.settings, app.store.engine
    service = Service(settings, engine)

    async def web() -> None:
        try:
            await run_server(settings, engine, handle_signals=False)
        except SystemExit as exit_:  # uvicorn exits the process when it cannot start; serve reports it instead
            raise OSError(f"uvicorn could not start (exit code {exit_.code})") from None

    asyncio.run(service.run(web=web))
    if service.failure is not None:
        raise click.ClickException(service.failure)


@cli.command()
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
    from newsletter.workers import run_worker

    logging.getLogger("newsletter").setLevel(logging.INFO)
    code = run_worker(app.settings, concurrency=concurrency)
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Sources' last fetch, recent editions and deliveries, what needs attention, next runs, subscribers."""
    from newsletter.status import status_view

    view = status_view(app.settings, app.store.engine, now=app.now())
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    _print_status(view)


def _print_status(view: dict[str, Any]) -> None:
    sources = Table(title="Sources")
    for column in ("source", "last fetch", "result", "error"):
        sources.add_column(column, overflow="fold")
    for s in view["sources"]:
        sources.add_row(s["name"], s["last_attempt"] or "never", s["result"] or "", s["error"] or "")
    console.print(sources)
    editions = Table(title="Recent editions")
    for column in ("edition", "papers", "sent", "deferred", "failed", "ambiguous", "note"):
        editions.add_column(column, overflow="fold")
    for e in view["editions"]:
        d = e["deliveries"]
        editions.add_row(e["slug"], str(e["papers"]), str(d["sent"]), str(d["deferred"]), str(d["failed"]),
                         str(d["ambiguous"]), e["empty_reason"] or "")
    console.print(editions)
    for e in view["editions"]:
        if len(e["workers"]) > 1 or (e["workers"] and view.get("queue") is not None):
            _print_workers(e["workers"], title=f"Per worker: {e['slug']}")
    if view.get("queue") is not None:
        queue = view["queue"]
        waiting = queue["waiting"] if queue["error"] is None else f"unknown ({queue['error']})"
        console.print(f"queue {queue['name']}: {waiting} batches waiting for a worker", highlight=False,
                      soft_wrap=True)
    attention = view["attention"]
    console.print(f"deferred: {attention['deferred']}, ambiguous: {attention['ambiguous']}", highlight=False)
    console.print("next runs: " + (", ".join(f"{job} {when}" for job, when in view["schedule"].items()) or "none"),
                  highlight=False, soft_wrap=True)
    for run in view["runs"]:
        console.print(f"  {run['started']} {run['job']} [{run['status']}] {run['summary']}", highlight=False,
                      soft_wrap=True)
    console.print("subscribers: " + ", ".join(f"{n} {s}" for s, n in view["subscribers"].items()),
                  highlight=False)


cli.add_command(subscribers_group)
cli.add_command(web_command)
topics.add_command(topics_evaluate)
topics.add_command(topics_suggest)


def main() -> None:
    cli(prog_name="newsletter")
