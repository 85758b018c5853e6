"""`fetch`, `papers` and `topics`: the papers pipeline as seen from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from newsletter.cli.dates import MOMENT
from newsletter.records.papers import SourceReport

if TYPE_CHECKING:
    pass

from newsletter.cli.app import App, NewsletterGroup, console, pass_app
from newsletter.cli.output import term
from newsletter.cli.words import plural


def _print_fetch_table(reports: list[SourceReport]) -> None:
    table = Table(title="Fetched sources")
    for column in ("source", "fetched", "new", "updated", "skipped", "errors"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for report in reports:
        errors = str(len(report.errors)) if report.errors else ("not modified" if report.not_modified else "0")
        table.add_row(term(report.source), str(report.fetched), str(report.new), str(report.updated),
                      str(report.skipped), errors)
    console.print(table)
    for report in reports:
        for warning in report.warnings:
            console.print(f"[yellow]warning[/yellow] {term(report.source)}: {term(warning)}", highlight=False,
                          soft_wrap=True)
        for error in report.errors:
            console.print(f"[red]error[/red] {term(report.source)}: {term(error)}", highlight=False, soft_wrap=True)


@click.command()
@click.option("--source", "sources", multiple=True, metavar="NAME", help="Fetch only this source (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@pass_app
def fetch(app: App, sources: tuple[str, ...], as_json: bool) -> None:
    """Download every source, store new and updated papers and match them to topics.

    Prints one row per source: entries fetched, papers new and updated, entries skipped (replacements,
    entries without an id) and errors. Exits non-zero only when every source failed.
    """
    from newsletter.usecases.fetch import fetch_sources  # scikit-learn: imported when used, not for --help

    with console.status("Fetching sources…", spinner="dots") if not as_json else contextlib.nullcontext():
        reports = asyncio.run(fetch_sources(app.settings, app.open_store(), names=sources))
    from newsletter.matching.coverage import store_warnings

    warnings = store_warnings(app.settings.topics, app.settings.matching, app.open_store())
    if as_json:
        click.echo(json.dumps({"sources": [_report_json(r) for r in reports], "topic_warnings": warnings}, indent=2))
    else:
        _print_fetch_table(reports)
        for warning in warnings:
            console.print(f"[yellow]warning[/yellow] {warning}", highlight=False, soft_wrap=True)
    if reports and all(r.failed for r in reports):
        raise click.ClickException("every source failed")


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


_DATE = MOMENT


@click.command()
@click.option("--since", type=_DATE, help="Only papers first seen at or after DATE (in the newsletter's time zone).")
@click.option("--topic", metavar="SLUG", help="Only papers matched to this topic.")
@click.option("--unmatched", is_flag=True, help="Only papers that match no topic.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@pass_app
def papers(app: App, since: datetime | None, topic: str | None, unmatched: bool, as_json: bool) -> None:
    """List stored papers, newest first, with trending score and why they match their topics."""
    from newsletter.usecases.reports import papers_view

    _warn_if_matches_are_stale(app)
    view = papers_view(app.settings, app.open_store(), now=app.now(), since=_since(app, since), topic=topic,
                       unmatched=unmatched)
    if as_json:
        click.echo(json.dumps(view.as_json(), indent=2, ensure_ascii=False))
        return
    table = Table(title=plural(len(view.papers), "paper"))
    table.add_column("id")
    table.add_column("title", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("topics", overflow="fold")
    for paper in view.papers:
        topics = ", ".join(t["slug"] for t in paper["topics"]) or "—"
        table.add_row(term(paper["id"]), term(paper["title"]), f"{paper['trending']['score']:.2f}", term(topics))
    console.print(table)


def _warn_if_matches_are_stale(app: App) -> None:
    """`papers` and `topics` only read: after a topic edit they say so instead of matching again (and writing)."""
    from newsletter.matching.refresh import matches_are_current

    if not matches_are_current(app.settings, app.open_store()):
        click.echo("warning: the topics or the matching method changed since the last `newsletter fetch`; the "
                   "matches shown are from before it (the next fetch or send matches every stored paper again)",
                   err=True)


@click.group(cls=NewsletterGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.option("--top", default=3, show_default=True, help="Papers shown per topic.")
@click.pass_context
def topics(ctx: click.Context, as_json: bool, top: int) -> None:
    """Per topic: how many papers match, the best ones and why; and how many match nothing."""
    from newsletter.usecases.reports import topics_view

    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None  # set by the group callback
    _warn_if_matches_are_stale(app)
    view = topics_view(app.settings, app.open_store(), now=app.now(), top=top)
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    for topic in view["topics"]:
        console.print(f"[bold]{term(topic['name'])}[/bold] ({term(topic['slug'])}): {plural(topic['count'], 'paper')}",
                      highlight=False)
        for paper in topic["top"]:
            console.print(f"  • {term(paper['title'])} [dim]({term(paper['id'])})[/dim]", highlight=False)
            console.print(f"    [dim]{term('; '.join(paper['reasons']))}[/dim]", highlight=False)
    console.print(
        f"{view['unmatched']['count']} of {plural(view['papers'], 'paper')} match no topic "
        "(list them with `newsletter papers --unmatched`).",
        highlight=False,
    )
