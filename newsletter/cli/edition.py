"""`newsletter edition show|pin|drop|note|approve`: an editor shapes a built edition before it is sent.

Pinned papers go first in every topic they are in; dropped ones vanish for every reader; the note appears
at the top of every email. Changes apply until the edition's ledger is written (its send starts); after
that they are refused, since some readers may already have it. With ``[schedule] approve = true``,
`serve` sends a scheduled edition only after `edition approve`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from newsletter.cli.app import App, console, pass_app
from newsletter.cli.dates import DAY
from newsletter.cli.words import plural
from newsletter.usecases.review import (
    EditionError,
    approve_edition,
    drop_paper,
    find_edition,
    is_sending,
    pin_paper,
    review_of,
    set_note,
)

if TYPE_CHECKING:
    from newsletter.records.editions import Edition, Frequency

__all__ = ["EditionError", "edition"]


def _edition(app: App, slug: str | None, frequency: Frequency, day: datetime | None) -> Edition:
    """The stored edition named by SLUG, or of --frequency/--date (built and stored now if needed)."""
    return find_edition(app.settings, app.open_store().engine, slug=slug, frequency=frequency,
                        day=day.date() if day else None, now=app.now())


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
    review = review_of(app.open_store().engine, shaped)
    approved = (f"approved {review.approved_at:%Y-%m-%d %H:%M} UTC" if review.approved_at else "not approved")
    sent = "being sent or sent" if is_sending(app.open_store().engine, shaped) else "not sent"
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
    click.echo(pin_paper(app.open_store().engine, shaped, paper_id, now=app.now()))


@edition.command()
@click.argument("paper_id")
@select_edition
@pass_app
def drop(app: App, paper_id: str, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Leave PAPER_ID out of the edition, for every reader."""
    shaped = _edition(app, slug, frequency, day)
    click.echo(drop_paper(app.open_store().engine, shaped, paper_id, now=app.now()))


@edition.command()
@click.argument("text")
@select_edition
@pass_app
def note(app: App, text: str, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Show TEXT at the top of every email of the edition ('' removes the note)."""
    shaped = _edition(app, slug, frequency, day)
    click.echo(set_note(app.open_store().engine, shaped, text, now=app.now()))


@edition.command()
@select_edition
@pass_app
def approve(app: App, slug: str | None, frequency: Frequency, day: datetime | None) -> None:
    """Let `serve` send the edition ([schedule] approve = true): at its next retry run."""
    shaped = _edition(app, slug, frequency, day)
    click.echo(approve_edition(app.settings, app.open_store().engine, shaped, now=app.now(), by="cli"))
