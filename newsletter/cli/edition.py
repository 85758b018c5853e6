"""`newsletter edition show|pin|drop|note|approve`: an editor shapes a built edition before it is sent.

Pinned papers go first in every topic they are in; dropped ones vanish for every reader; the note appears
at the top of every email. Changes apply until the edition's ledger is written (its send starts); after
that they are refused, since some readers may already have it. With ``[schedule] approve = true``,
`serve` sends a scheduled edition only after `edition approve`.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import TYPE_CHECKING

import click

from newsletter.cli.app import App, console, pass_app
from newsletter.cli.dates import DAY
from newsletter.cli.words import plural
from newsletter.errors import NewsletterError
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger
from newsletter.storage.reviews import Review, ReviewStore

if TYPE_CHECKING:
    from newsletter.records.editions import Edition, Frequency


class EditionError(NewsletterError):
    """The edition named does not exist, or can no longer be changed."""


def _edition(app: App, slug: str | None, frequency: Frequency, day: datetime | None) -> Edition:
    """The stored edition named by SLUG, or of --frequency/--date (built and stored now if needed)."""
    from newsletter.usecases.campaign import edition_for  # matching libraries: only to build a new edition

    engine = app.open_store().engine
    when: date | None
    if slug is not None:
        stored = EditionStore(engine).get_by_slug(slug)
        if stored is None:
            raise EditionError(f"no edition {slug!r} (editions are named like daily-2026-06-12; "
                               "`newsletter status` lists the recent ones)")
        frequency, when = stored.frequency, stored.date
    else:
        when = day.date() if day else None
    return edition_for(app.settings, app.open_store(), EditionStore(engine), frequency=frequency, now=app.now(),
                       day=when)


def _review(app: App, edition: Edition) -> Review:
    return ReviewStore(app.open_store().engine).get(edition.id) or Review(edition_id=edition.id)


def _changeable(app: App, edition: Edition) -> Review:
    if Ledger(app.open_store().engine).subscribers_with_rows(edition.id):
        raise EditionError(f"{edition.slug} is being sent or was sent; it can no longer be changed")
    if edition.is_empty and not _review(app, edition).dropped:
        raise EditionError(f"{edition.slug} is empty ({edition.empty_reason}); there is nothing to shape")
    return _review(app, edition)


def _paper(edition: Edition, review: Review, paper_id: str) -> str:
    if paper_id not in edition.papers and paper_id not in review.dropped:
        raise EditionError(f"paper {paper_id!r} is not in {edition.slug} (`newsletter edition show` lists its papers)")
    return paper_id


selector = [
    click.argument("slug", required=False),
    click.option("--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True,
                 help="Without SLUG: the edition of this frequency."),
    click.option("--date", "day", type=DAY, help="Without SLUG: the edition of this date (default: today)."),
]


def select_edition(function: click.decorators.FC) -> click.decorators.FC:
    for decorator in reversed(selector):
        function = decorator(function)
    return function


@click.group()
def edition() -> None:
    """Look at a built edition and shape it before it is sent: pin, drop, note, approve."""


@edition.command()
@select_edition
@pass_app
def show(app: App, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """The edition's topics and papers as every reader's email will order them, its note and approval."""
    shaped = _edition(app, slug, frequency, day)
    review = _review(app, shaped)
    approved = (f"approved {review.approved_at:%Y-%m-%d %H:%M} UTC" if review.approved_at else "not approved")
    sent = "being sent or sent" if Ledger(app.open_store().engine).subscribers_with_rows(shaped.id) else "not sent"
    console.print(f"{shaped.slug}: {plural(shaped.paper_count, 'paper')}; {approved}; {sent}", highlight=False,
                  soft_wrap=True)
    if shaped.is_empty:
        console.print(f"  empty: {shaped.empty_reason}", highlight=False, soft_wrap=True)
    if review.note:
        console.print(f"note: {review.note}", highlight=False, soft_wrap=True)
    for topic in shaped.topics:
        console.print(f"{topic.name} ({topic.slug}):", highlight=False)
        for entry in topic.entries:
            mark = "pinned " if entry.paper_id in review.pinned else ""
            console.print(f"  {mark}{entry.paper_id}  {shaped.papers[entry.paper_id].title}", highlight=False,
                          soft_wrap=True)
    if review.dropped:
        console.print("dropped: " + ", ".join(review.dropped), highlight=False, soft_wrap=True)


@edition.command()
@click.argument("paper_id")
@select_edition
@pass_app
def pin(app: App, paper_id: str, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Put PAPER_ID first in every topic it is in (pinned earlier papers stay ahead of it)."""
    shaped = _edition(app, slug, frequency, day)
    review = _changeable(app, shaped)
    paper = _paper(shaped, review, paper_id)
    pinned = (*[p for p in review.pinned if p != paper], paper)
    dropped = tuple(p for p in review.dropped if p != paper)
    _save(app, dataclasses.replace(review, pinned=pinned, dropped=dropped))
    click.echo(f"{shaped.slug}: pinned {paper}")


@edition.command()
@click.argument("paper_id")
@select_edition
@pass_app
def drop(app: App, paper_id: str, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Leave PAPER_ID out of the edition, for every reader."""
    shaped = _edition(app, slug, frequency, day)
    review = _changeable(app, shaped)
    paper = _paper(shaped, review, paper_id)
    pinned = tuple(p for p in review.pinned if p != paper)
    dropped = (*[p for p in review.dropped if p != paper], paper)
    _save(app, dataclasses.replace(review, pinned=pinned, dropped=dropped))
    click.echo(f"{shaped.slug}: dropped {paper}")


@edition.command()
@click.argument("text")
@select_edition
@pass_app
def note(app: App, text: str, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Show TEXT at the top of every email of the edition ('' removes the note)."""
    shaped = _edition(app, slug, frequency, day)
    review = _changeable(app, shaped)
    _save(app, dataclasses.replace(review, note=" ".join(text.split())))
    click.echo(f"{shaped.slug}: note {'set' if text.strip() else 'removed'}")


@edition.command()
@select_edition
@pass_app
def approve(app: App, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Let `serve` send the edition ([schedule] approve = true): at its next retry run."""
    shaped = _edition(app, slug, frequency, day)
    review = _changeable(app, shaped)
    if review.approved_at is not None:
        click.echo(f"{shaped.slug}: already approved")
        return
    _save(app, dataclasses.replace(review, approved_at=app.now(), approved_by="cli"))
    when = "at the next retry run of `serve`" if app.settings.schedule.approve else "by `newsletter send`"
    click.echo(f"{shaped.slug}: approved; it will be sent {when}")


def _save(app: App, review: Review) -> None:
    ReviewStore(app.open_store().engine).save(review, now=app.now())

