"""`deliveries retry`: the operator's way back after a mistake (a wrong password, a relay that refused).

A halted run leaves its rows pending, so fixing the cause and running `send` again is usually enough.
Rows that were marked failed or ambiguous (by an older version, or for a reason since fixed) stay so
until an operator says otherwise: this command puts them back in the queue. Ambiguous rows may already
have reached their reader, so they are re-queued only with an explicit flag.
"""

from __future__ import annotations

from typing import Literal

import click

from newsletter.cli.app import App, console, pass_app


@click.group()
def deliveries() -> None:
    """Re-queue an edition's deliveries after fixing a configuration mistake."""


@deliveries.command()
@click.argument("edition")
@click.option("--state", type=click.Choice(["failed", "ambiguous", "deferred"]), default="failed", show_default=True,
              help="Which rows to send again.")
@click.option("--email", metavar="ADDR", help="Only this reader's row.")
@click.option("--include-ambiguous", is_flag=True,
              help="Required with --state ambiguous: those messages may have arrived already and may duplicate.")
@pass_app
def retry(app: App, edition: str, state: Literal["failed", "ambiguous", "deferred"], email: str | None,
          include_ambiguous: bool) -> None:
    """Put EDITION's (slug such as daily-2026-04-27, or id) failed rows back to pending.

    The next `newsletter send` for that edition's date, or `serve`'s next retry run, sends them.
    """
    from newsletter.usecases.review import retry_deliveries

    if state == "ambiguous" and not include_ambiguous:
        raise click.UsageError("--state ambiguous may send a second copy; add --include-ambiguous to confirm")
    console.print(retry_deliveries(app.open_store().engine, edition, states=[state], email=email, now=app.now()),
                  highlight=False, soft_wrap=True)
