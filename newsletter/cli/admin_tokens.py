"""`newsletter admin token NAME`, `admin tokens`, `admin revoke NAME`: bearer tokens of the JSON API (docs/api.md).

A token is printed once, when it is made; only its SHA-256 is stored, so a lost token is revoked and made
again, never shown again.
"""

from __future__ import annotations

import json

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.output import plain


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='Print {"name": ..., "token": ...} instead of a sentence.')
@pass_app
def token(app: App, name: str, as_json: bool) -> None:
    """Make an API token called NAME and print it, once (send it as `Authorization: Bearer <token>`)."""
    from newsletter.storage.api_tokens import TokenStore

    made = TokenStore(app.open_store().engine).create(name, now=app.now())
    if as_json:
        click.echo(json.dumps({"name": name.strip(), "token": made}))
        return
    click.echo(made)
    click.echo(plain(f"API token {name.strip()!r} made; it is shown only now. Revoke it with "
                     f"`newsletter admin revoke {name.strip()}`."), err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {name, created, last_used}.")
@pass_app
def tokens(app: App, as_json: bool) -> None:
    """List the API tokens by name, with when each was made and last used (never the tokens)."""
    from newsletter.storage.api_tokens import TokenStore

    found = TokenStore(app.open_store().engine).tokens()
    if as_json:
        click.echo(json.dumps([{"name": t.name, "created": t.created.isoformat(),
                                "last_used": t.last_used.isoformat() if t.last_used else None} for t in found]))
        return
    if not found:
        click.echo("no API tokens (`newsletter admin token NAME` makes one)")
    for item in found:
        used = f"last used {item.last_used:%Y-%m-%d %H:%M} UTC" if item.last_used else "never used"
        click.echo(plain(f"{item.name}: made {item.created:%Y-%m-%d %H:%M} UTC, {used}"))


@click.command()
@click.argument("name")
@pass_app
def revoke(app: App, name: str) -> None:
    """Revoke the API token called NAME: requests with it are refused (401) from now on."""
    from newsletter.storage.api_tokens import TokenStore

    TokenStore(app.open_store().engine).revoke(name)
    click.echo(plain(f"API token {name!r} revoked"))


COMMANDS = (token, tokens, revoke)
