"""`newsletter subscribers …` and `newsletter web`: thin commands over ``newsletter.usecases.subscribe`` and
``newsletter.web.app`` (registered on the main group in ``newsletter.cli.main``)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import click
from rich.table import Table

from newsletter.cli.app import console
from newsletter.cli.output import plain
from newsletter.cli.progress import progress_bar
from newsletter.cli.words import nouns, plural
from newsletter.config import Settings
from subscribers.errors import NotFoundError
from subscribers.evidence import EvidenceStore
from subscribers.feedback import FeedbackStore
from subscribers.models import STATUSES, Frequency, ImportReport, Status, Subscriber

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from subscribers.tokens import TokenSigner


class _App(Protocol):
    @property
    def settings(self) -> Settings: ...

    def open_store(self) -> Any: ...

    def now(self) -> datetime: ...


def _engine(app: _App) -> Engine:
    return cast("Engine", app.open_store().engine)


def _topics(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def _one_line(subscriber: Subscriber) -> str:
    from newsletter.usecases.subscribe import reader_line

    return reader_line(subscriber)


def _audit(app: _App, action: str, detail: str) -> None:
    """Write what was done to the audit log the web console shows (actor ``cli``)."""
    from newsletter.usecases.operators import record_action

    record_action(_engine(app), "cli", action, detail, now=app.now())


def _signer(app: _App) -> TokenSigner:
    from newsletter.rendering.links import signer_from_settings

    return signer_from_settings(app.settings)  # a missing key is a one-line error before anything changes


@click.group()
def subscribers() -> None:
    """Manage the subscriber list: add, remove, list, show, import and export."""


@subscribers.command()
@click.argument("email")
@click.option("--name", help="The subscriber's name (shown in the greeting).")
@click.option("--topics", metavar="A,B", help="Topics in the reader's order (default: every topic).")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), help="How often (default: daily).")
@click.option("--confirm", is_flag=True, help="Keep them pending and send a confirmation email instead.")
@click.option("--force", is_flag=True, help="Add a suppressed address (unsubscribed, bounced, deleted) anyway.")
@click.pass_obj
def add(app: _App, email: str, name: str | None, topics: str | None, frequency: Frequency | None, confirm: bool,
        force: bool) -> None:
    """Add a subscriber (or update one): active at once, since you vouch for their consent.

    With --confirm they stay pending until they open the link in the confirmation email. A suppressed
    address is refused unless --force is given.
    """

    from newsletter.usecases.subscribe import add_subscriber, send_confirmations

    signer = _signer(app) if confirm else None
    now = app.now()
    what, subscriber = add_subscriber(app.settings, _engine(app), email, now=now, name=name, topics=_topics(topics),
                                      frequency=frequency, pending=confirm, force=force)
    click.echo(f"{what} {_one_line(subscriber)}")
    _audit(app, "reader.add", f"{what} {_one_line(subscriber)}")
    if signer is not None and subscriber.status == "pending":
        sent = send_confirmations(app.settings, _engine(app), signer, [subscriber], now=now)
        click.echo("confirmation email sent" if sent else
                   "confirmation email NOT sent (3 already sent this week, or sending failed; see the log)")


@subscribers.command()
@click.argument("email")
@click.option("--topic", metavar="SLUG", help="Remove only this topic (the last topic unsubscribes entirely).")
@click.option("--delete", is_flag=True,
              help="Erase the personal data (on request); only a suppression entry (a hash) is kept.")
@click.pass_obj
def remove(app: _App, email: str, topic: str | None, delete: bool) -> None:
    """Unsubscribe a subscriber from everything or from one topic, or erase their personal data.

    Takes effect at once, also for a send in progress. The address goes on the suppression list, so no
    import adds it again without --force.
    """

    from newsletter.usecases.subscribe import remove_subscriber

    if delete and topic:
        raise click.UsageError("--delete and --topic do not go together")
    result = remove_subscriber(app.settings, _engine(app), email, now=app.now(), topic=topic, delete=delete)
    done = result.summary()
    click.echo(done)
    if result.changed:
        _audit(app, "reader.delete" if delete else "reader.remove_topic" if topic else "reader.remove", done)


@subscribers.command(name="list")
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers of this status.")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), help="Only subscribers of this frequency.")
@click.option("--topic", metavar="SLUG", help="Only subscribers of this topic.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.pass_obj
def list_command(app: _App, status: Status | None, frequency: Frequency | None, topic: str | None,
                 as_json: bool) -> None:
    """List subscribers in the order they were added, with status, topics and frequency."""

    from newsletter.usecases.subscribe import subscriber_json, subscriber_store

    found = subscriber_store(app.settings, _engine(app)).list_all(status=status, frequency=frequency, topic=topic)
    if as_json:
        click.echo(json.dumps({"count": len(found), "subscribers": [subscriber_json(s) for s in found]}, indent=2,
                              ensure_ascii=False))
        return
    table = Table(title=plural(len(found), "subscriber"))
    longest = max((len(s.email) for s in found), default=5)
    for column in ("id", "email", "name", "status", "topics", "frequency", "since"):
        if column == "email":  # an address cut in two cannot be copied; the other columns give way
            table.add_column(column, no_wrap=True, min_width=longest)
        else:
            table.add_column(column, overflow="fold", justify="right" if column == "id" else "left")
    for s in found:
        table.add_row(str(s.id), s.email, s.name, s.status, ", ".join(s.topics), s.frequency, f"{s.created:%Y-%m-%d}")
    console.print(table)


@subscribers.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.pass_obj
def show(app: _App, email: str, as_json: bool) -> None:
    """Everything stored about one address: status, topics, consent and confirmation, suppression, feedback."""

    from newsletter.usecases.subscribe import subscriber_json, subscriber_store
    from subscribers.addresses import valid_email

    if as_json:
        from newsletter.usecases.subscriber_view import subscriber_view

        click.echo(json.dumps(subscriber_view(app.settings, _engine(app), email), indent=2, ensure_ascii=False))
        return
    store = subscriber_store(app.settings, _engine(app))
    address = valid_email(email)
    subscriber = store.get_by_email(address)
    suppression = store.suppression(address)
    if subscriber is None and suppression is None:
        raise NotFoundError(f"no subscriber {address!r}, and the address is not suppressed")
    events = EvidenceStore(store.engine).events(subscriber.id) if subscriber else []
    votes = FeedbackStore(_engine(app)).votes(subscriber_id=subscriber.id) if subscriber else []
    feedback = [{"paper": v.paper_id, "topic": v.topic, "vote": "more" if v.vote > 0 else "less",
                 "at": v.created.isoformat()} for v in votes]
    if subscriber is None:
        click.echo(plain(f"{address}: not on the list"))
    else:
        for key, value in subscriber_json(subscriber).items():
            shown = ", ".join(value) if isinstance(value, list) else ("—" if value in (None, "") else value)
            click.echo(plain(f"{key:>16}: {shown}"))
    if suppression is not None:
        click.echo(plain(f"{'suppressed':>16}: {suppression.reason} since {suppression.created:%Y-%m-%d %H:%M} UTC"))
    for event in events:  # what came back by mail, and what was done: the evidence
        # the diagnostic and Message-ID are a stranger's words: control characters are shown, never sent
        click.echo(plain(f"{'mail back':>16}: {event.created:%Y-%m-%d %H:%M} {event.kind} → {event.action}"
                         f" [{event.status or '—'}] {event.diagnostic or ''} (our {event.message_id or 'message'},"
                         f" by {event.attributed_by})"))
    for item in feedback:
        click.echo(plain(f"{'feedback':>16}: {item['vote']} like {item['paper']} in {item['topic']} ({item['at']})"))


def _print_import(report: ImportReport) -> None:
    from newsletter.usecases.subscribe import import_lines

    for line in import_lines(report):
        click.echo(line)


def _import_json(report: ImportReport, sent: int) -> dict[str, Any]:
    from newsletter.usecases.subscribe import kept_by_status

    return {
        "dry_run": report.dry_run,
        "encoding": report.encoding,
        "delimiter": report.delimiter,
        "rows": report.rows,
        "added": [s.email for s in report.added],
        "updated": [s.email for s in report.updated],
        "unchanged": [s.email for s in report.unchanged],
        "errors": [{"line": e.line, "message": e.message} for e in report.errors],
        "kept": kept_by_status(report),
        "confirmations_sent": sent,
    }


@subscribers.command(name="import")
@click.argument("file", type=click.File("rb", lazy=False))
@click.option("--encoding", metavar="NAME",
              help="The file's text encoding (default: detected: UTF-8 with or without BOM, else cp1252/Latin-1).")
@click.option("--confirm", is_flag=True, help="Keep new subscribers pending and send them confirmation emails.")
@click.option("--force", is_flag=True, help="Import suppressed addresses (unsubscribed, bounced, deleted) too.")
@click.option("--dry-run", is_flag=True, help="Check every row and report; change and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.option("--quiet", is_flag=True, help="No progress bar (one is drawn on standard error when it is a terminal).")
@click.pass_obj
def import_command(app: _App, file: Any, encoding: str | None, confirm: bool, force: bool, dry_run: bool,
                   as_json: bool, quiet: bool) -> None:
    """Import FILE (CSV: email,name,topics,frequency; topics separated by ';'; '-' reads stdin).

    The encoding (UTF-8, Windows-1252, Latin-1) and the delimiter (',', ';', tab) are detected and reported,
    so a file saved by Excel in any locale imports as it is.
    Imported subscribers are active (you vouch for their consent) unless --confirm. Known addresses are
    updated, so importing twice changes nothing. Every bad row is reported with its line number and
    reason, the others are imported, 1,000 rows per transaction (an import stopped half-way is finished by
    running it again); the exit code is 1 when any row was not imported.
    """

    from newsletter.usecases.subscribe import import_subscribers, send_confirmations

    signer = _signer(app) if confirm and not dry_run else None
    now = app.now()
    with progress_bar("Importing", quiet=quiet) as progress:
        report = import_subscribers(app.settings, _engine(app), file.read(), now=now, confirm=confirm, force=force,
                                    dry_run=dry_run, encoding=encoding, progress=progress)
    if not dry_run:
        from newsletter.usecases.subscribe import import_lines

        _audit(app, "reader.import", next(line for line in import_lines(report) if line.endswith(" not imported")))
    sent = 0
    if signer is not None and report.to_confirm:
        with console.status(f"Sending {plural(len(report.to_confirm), 'confirmation email')}…"):
            sent = send_confirmations(app.settings, _engine(app), signer, report.to_confirm, now=now)
    if as_json:
        click.echo(json.dumps(_import_json(report, sent), indent=2, ensure_ascii=False))
    else:
        _print_import(report)
        if signer is not None:
            click.echo(f"{sent} of {plural(len(report.to_confirm), 'confirmation email')} sent")
    if report.errors:
        not_imported = f"{len(report.errors)} of {plural(report.rows, 'row')} {nouns(len(report.errors), 'was')}"
        raise click.ClickException(f"{not_imported} not imported")


@subscribers.command(name="export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default="-")
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers of this status.")
@click.option("--quiet", is_flag=True, help="No progress bar (one is drawn on standard error when it is a terminal).")
@click.pass_obj
def export_command(app: _App, file: Path, status: Status | None, quiet: bool) -> None:
    """Write the list as CSV to FILE (default: standard output); `subscribers import` reads it back.

    Readers are read and written a page at a time, so a list of any size exports in little memory.
    """

    from newsletter.usecases.subscribe import subscriber_store
    from subscribers.csvio import export_csv

    store = subscriber_store(app.settings, _engine(app))
    if str(file) == "-":
        with progress_bar("Exporting", quiet=quiet) as progress:
            export_csv(store, sys.stdout, status=status, progress=progress)
        return
    with file.open("w", encoding="utf-8", newline="") as stream, progress_bar("Exporting", quiet=quiet) as progress:
        count = export_csv(store, stream, status=status, progress=progress)
    click.echo(f"wrote {count} subscribers to {file}", err=True)


@click.command()
@click.option("--host", help="Listen on this address (default: [web] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port (default: [web] port).")
@click.option("--access-log", is_flag=True, help="Log every request (their URLs hold link tokens: off by default).")
@click.pass_obj
def web(app: _App, host: str | None, port: int | None, access_log: bool) -> None:
    """Serve the subscriber pages: subscribe, confirm, manage, one-click unsubscribe, archive, Atom feeds.

    Put a TLS-terminating proxy serving [newsletter] base_url in front of it. Stops on SIGINT/SIGTERM.
    """
    from newsletter.web.server import run_server

    settings = app.settings
    engine = _engine(app)
    console.print(f"serving on http://{host or settings.web.host}:{port or settings.web.port} "
                  f"(public address: {settings.newsletter.base_url})", highlight=False, soft_wrap=True)
    asyncio.run(run_server(settings, engine, host=host, port=port, access_log=access_log))
