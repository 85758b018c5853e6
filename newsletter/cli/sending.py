"""`preview`, `send` and `demo`: building one reader's email, delivering an edition."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from newsletter.delivery.sending import SendReport
    from newsletter.usecases.campaign import Plan
    from newsletter.usecases.send import Progress as SendProgress

from newsletter.cli.app import App, console, pass_app
from newsletter.cli.dates import DAY
from newsletter.cli.output import plain, term
from newsletter.cli.words import nouns, plural


@click.command()
@click.option("--subscriber", "subscriber_email", metavar="EMAIL", help="Preview this subscriber's email.")
@click.option("--topics", metavar="A,B", help="Preview for a stand-in reader of these topics (default: all).")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True)
@click.option("--date", "day", type=DAY, help="Edition date (default: today).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="preview",
              show_default=True, help="Folder for the .html, .txt and .eml files.")
@pass_app
def preview(app: App, subscriber_email: str | None, topics: str | None, frequency: Literal["daily", "weekly"],
            day: datetime | None, out_dir: Path) -> None:
    """Write one reader's email for an edition as .html, .txt and .eml, exactly as it would be sent.

    Uses the stored edition if it was already sent; otherwise computes it as it would be built now,
    without storing it (a preview never freezes an edition). Sends nothing and records nothing.
    """
    from newsletter.usecases.preview import preview as make_preview  # imports Premailer: only when needed

    slugs = [t.strip() for t in topics.split(",") if t.strip()] if topics is not None else None
    result = make_preview(app.settings, app.open_store(), out_dir=out_dir, now=app.now(),
                          subscriber_email=subscriber_email, topics=slugs, frequency=frequency,
                          day=day.date() if day else None)
    if result.no_email is not None:
        click.echo(f"{result.edition.slug}: no email ({result.no_email})")
        return
    for path in (result.html_path, result.text_path, result.eml_path):
        click.echo(str(path))
    moved = f", {result.hidden} more on the web" if result.hidden else ""
    click.echo(f"HTML size: {result.html_bytes:,} bytes; {plural(result.papers, 'paper')}{moved}; "
               f"subject: {plain(result.subject)}")
    if not app.settings.email.postal_address:
        click.echo("warning: [email] postal_address is empty; bulk email needs the sender's postal address")


def who_gets(emails: tuple[str, ...], *, shown: int = 5) -> str:
    """The first readers of a variant and how many more: enough to check a dry run without a wall of text."""
    more = f" and {len(emails) - shown} more" if len(emails) > shown else ""
    return ", ".join(emails[:shown]) + more


def _print_plan(planned: Plan) -> None:
    edition = planned.edition
    if edition.is_empty:
        console.print(f"{term(edition.slug)}: nothing would be sent ({term(edition.empty_reason)})", highlight=False,
                      soft_wrap=True)
        return
    table = Table(title=f"Dry run of {edition.slug}: nothing sent, nothing recorded")
    for column in ("variant", "readers", "papers", "HTML bytes", "subject", "who"):
        table.add_column(column, justify="left" if column in ("variant", "subject", "who") else "right",
                         overflow="fold")
    for variant in sorted(planned.variants, key=lambda v: -v.readers):
        table.add_row(variant.key[:8], str(variant.readers), str(variant.papers), f"{variant.html_bytes:,}",
                      term(variant.subject), who_gets(variant.emails))
    console.print(table)
    console.print(
        f"{plural(planned.recipients, 'email')} in {plural(len(planned.variants), 'distinct variant')} to "
        f"{plural(planned.subscribers, 'subscriber')}; "
        f"{planned.nothing_new} {nouns(planned.nothing_new, 'has')} nothing new; "
        f"{planned.already_queued} already in the ledger",
        highlight=False, soft_wrap=True,
    )


def _print_send_report(result: SendReport) -> None:
    prepared = result.prepared
    edition = prepared.edition
    if edition.is_empty:
        console.print(f"{term(edition.slug)}: nothing to send ({term(edition.empty_reason)})", highlight=False,
                      soft_wrap=True)
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
    relay = f" (relay {stats.relay})" if stats.relay else ""
    for state, group in sorted(stats.reasons.items()):
        for reason, count in sorted(group.items(), key=lambda item: -item[1])[:5]:
            console.print(f"{count} {state}: {reason}{relay}", highlight=False, soft_wrap=True)
    for row in result.ambiguous:
        console.print(f"[yellow]ambiguous[/yellow] {term(row['email'])} Message-ID {term(row['message_id'])}: "
                      f"{term(row['message'])} "
                      "(not resent; look for that Message-ID in the relay's log before resending by hand)",
                      highlight=False, soft_wrap=True)
    for holder, (count, until) in sorted(result.claim_holders.items()):
        # whether that process lives cannot be known from here (another host, a replaced container)
        console.print(f"{count} messages are claimed by {term(holder)} until {until:%Y-%m-%d %H:%M:%S} UTC: "
                      "another `send` or `serve` still running, or stopped without giving them back; the next "
                      "run after then sends them", highlight=False, soft_wrap=True)
    if result.enqueued is not None:
        again = f"; {result.requeued} enqueued again after their worker stopped" if result.requeued else ""
        console.print(f"enqueued {result.enqueued} messages for the workers{again}", highlight=False, soft_wrap=True)
        if not result.waited and result.stats.halt is None:
            console.print("not waiting for the workers: they go on; `newsletter status` shows their progress",
                          highlight=False, soft_wrap=True)
    if result.workers and (result.enqueued is not None or len(result.workers) > 1):
        print_workers(result.workers)
    for channel in result.channels:
        posted = f", {plural(channel.papers, 'paper')}" if channel.state == "sent" else ""
        console.print(f"channel {term(channel.channel)}: {channel.state}{posted} ({term(channel.message)})",
                      highlight=False, soft_wrap=True)


_WORKER_STATES = ("sent", "deferred", "failed", "ambiguous", "suppressed", "claimed")


def print_workers(workers: dict[str, dict[str, int]], title: str = "Per worker") -> None:
    table = Table(title=title)
    table.add_column("worker", overflow="fold")
    for column in _WORKER_STATES:
        table.add_column(column, justify="right")
    for name, states in sorted(workers.items()):
        table.add_row(name, *(str(states.get(state, 0)) for state in _WORKER_STATES))
    console.print(table)


@click.command()
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True)
@click.option("--date", "day", type=DAY, help="Edition date (default: today).")
@click.option("--dry-run", is_flag=True, help="Render and count what would be sent; send and record nothing.")
@click.option("--to", "to_address", metavar="EMAIL",
              help="Send a test copy of the most common email to EMAIL only (any edition, sent or not); the "
                   "ledger is not touched.")
@click.option("--subscriber", "copy_of", metavar="EMAIL", help="With --to: copy this subscriber's email instead.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages in this run.")
@click.option("--processes", type=click.IntRange(min=1), help="Sending processes (default: [delivery] processes).")
@click.option("--workers", "use_workers", is_flag=True,
              help="Enqueue batches for the Celery workers ([workers] broker, `newsletter worker`) instead of "
                   "sending from this process; waits until every message was tried.")
@click.option("--no-wait", is_flag=True, help="With --workers: exit once the batches are enqueued.")
@pass_app
def send(app: App, frequency: Literal["daily", "weekly"], day: datetime | None, dry_run: bool,
         to_address: str | None, copy_of: str | None, limit: int | None, processes: int | None, use_workers: bool,
         no_wait: bool) -> None:
    """Build the edition if needed, fill the delivery ledger and send, with progress and a summary.

    Safe to run again: it resumes, never sends a message twice, and never resends one whose delivery is
    ambiguous (listed at the end). SIGINT/SIGTERM stop claiming, let in-flight messages finish and exit.
    With --workers the workers send; SIGINT/SIGTERM stop waiting for them, not them. The edition's
    [[channels]] are posted by this process after the emails, once each (with --workers too).
    """
    from newsletter.usecases.campaign import plan
    from newsletter.usecases.send import run_send

    when = day.date() if day else None
    if dry_run and to_address:
        raise click.UsageError("--dry-run and --to do not go together")
    if use_workers and (limit or processes or dry_run or to_address):
        raise click.UsageError("--workers does not go with --limit, --processes, --dry-run or --to")
    if no_wait and not use_workers:
        raise click.UsageError("--no-wait goes with --workers")
    if copy_of and not to_address:
        raise click.UsageError("--subscriber goes with --to")
    if dry_run:
        planned = plan(app.settings, app.open_store().engine, frequency=frequency, now=app.now(), day=when)
        _print_plan(planned)
        return
    if to_address:
        from newsletter.usecases.copies import send_copy

        copy = send_copy(app.settings, app.open_store().engine, frequency=frequency, to=to_address, now=app.now(),
                         day=when, subscriber_email=copy_of)
        console.print(f"sent a test copy of {copy.edition} ({copy.whose}) to {to_address} via {copy.via}",
                      highlight=False, soft_wrap=True)
        return
    progress = Progress(TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=True)
    started = time.monotonic()
    with progress:
        task = progress.add_task("send", total=None, rate="")

        def update(state: SendProgress) -> None:
            elapsed = max(1e-6, time.monotonic() - started)
            progress.update(task, total=state.total, completed=state.done, rate=f"{state.done / elapsed:,.0f} msg/s")

        result = run_send(app.settings, app.open_store().engine, frequency=frequency, day=when, limit=limit,
                          processes=processes, workers=use_workers, wait=not no_wait, on_progress=update)
    _print_send_report(result)
    check_complete(result)


EXIT_INCOMPLETE = 3
"""`send` finished, but rows are left for later through no fault of the readers (deferred, interrupted)."""


class Incomplete(click.ClickException):
    exit_code = EXIT_INCOMPLETE


EXIT_AMBIGUOUS = 4
"""`send` finished, but messages of this run are ``ambiguous``: the relay may or may not have them."""


class Ambiguous(click.ClickException):
    exit_code = EXIT_AMBIGUOUS


def check_complete(result: SendReport) -> None:
    """Exit non-zero when something is left undelivered that is not the readers' fault.

    A halt (session error, a refusal by policy, the breaker, the ledger) exits 1 with its reason; rows
    deferred by the relay, or a run stopped by a signal with rows left, exit 3; messages of this run left
    ``ambiguous`` exit 4, so a cron wrapper never takes such a run for full success. Readers' own refusals
    (a bounce, a full mailbox) do not make the run fail.
    """
    from newsletter.errors import DeliveryError

    stats, counts = result.stats, result.counts
    left = counts.get("pending", 0) + counts.get("claimed", 0)
    if stats.halt is not None:
        raise DeliveryError(f"delivery stopped: {stats.halt}; {left} messages left to send: fix the cause, then "
                            "run `newsletter send` again (see docs/delivery.md)")
    relay_deferred = stats.deferred - stats.soft_bounced
    if relay_deferred > 0:
        raise Incomplete(f"{relay_deferred} messages deferred by the relay {stats.relay}; they are retried "
                         "later (`newsletter send` again, or `serve`)")
    if stats.interrupted and left:
        raise Incomplete(f"stopped with {left} messages left to send; run `newsletter send` again to resume")
    if stats.ambiguous:
        raise Ambiguous(f"{stats.ambiguous} messages of this run are ambiguous (the connection was lost after "
                        "their content was sent): they are not resent; check the Message-IDs listed above in the "
                        "relay's log, then resend those it lacks: `newsletter deliveries retry EDITION --state "
                        "ambiguous --include-ambiguous --email ADDRESS`")


@click.command()
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path),
              help="Work here instead of a new temporary folder.")
@click.option("--serve", "keep_serving", is_flag=True,
              help="Then keep the archive and the subscribe pages up on 127.0.0.1 until Ctrl-C.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="Port of the pages with --serve.")
def demo(folder: Path | None, keep_serving: bool, port: int) -> None:
    """Run the whole pipeline offline: bundled real feeds, sample subscribers, a local SMTP server.

    Fetches the feeds shipped with the project, builds today's daily edition, renders it once per distinct
    email and delivers it over real SMTP to an embedded server on 127.0.0.1 that stores a Maildir. Trending
    scores count from the feeds' own day (they are old snapshots). Prints the delivery summary, the best
    trending papers and a file:// link to each received email. Needs no network and no config file.
    """
    from newsletter.cli.demo_output import print_demo, serve_demo
    from newsletter.demo.run import run_demo

    result = run_demo(folder=folder, say=lambda line: console.print(term(line), highlight=False, soft_wrap=True),
                      web_port=port)
    _print_send_report(result.send)
    print_demo(result)
    if keep_serving:
        serve_demo(result, port=port)
