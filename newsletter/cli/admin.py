"""`newsletter admin …`: operator accounts for the web console and bearer tokens for the JSON API.

The group is shared by two families of commands: console accounts (docs/admin.md) and API tokens (docs/api.md).
Account commands are thin: they read the password (a hidden prompt typed twice, or one line of standard input
with ``--password-stdin`` for scripts) and call ``newsletter.usecases.operators``. A password is never an
argument, so it never lands in the shell history or the process list.
"""

from __future__ import annotations

import json
import sys

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.output import plain


@click.group()
def admin() -> None:
    """Operator accounts for the web console (/admin/) and tokens for the JSON API (/api/v1/)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    return value


password_stdin = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of standard input (for scripts).")


@admin.command()
@click.argument("email")
@password_stdin
@pass_app
def add(app: App, email: str, password_stdin: bool) -> None:
    """Create a console account for EMAIL; asks for its password (at least 12 characters)."""
    from newsletter.usecases.operators import add_operator, check_password

    password = check_password(_password(password_stdin))  # a short one is refused before the database opens
    added = add_operator(app.open_store().engine, email, password, now=app.now())
    click.echo(plain(f"added operator {added.email}; sign in at "
                     f"{app.settings.newsletter.base_url.rstrip('/')}/admin/"))


@admin.command()
@click.argument("email")
@password_stdin
@pass_app
def passwd(app: App, email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL's account; every browser signed in to it is signed out."""
    from newsletter.usecases.operators import change_password, check_password

    password = check_password(_password(password_stdin))
    changed = change_password(app.open_store().engine, email, password, now=app.now())
    click.echo(plain(f"changed the password of {changed.email}; its sessions are signed out"))


@admin.command()
@click.argument("email")
@pass_app
def remove(app: App, email: str) -> None:
    """Delete EMAIL's console account and sign out its sessions (its audit entries stay)."""
    from newsletter.usecases.operators import remove_operator

    removed = remove_operator(app.open_store().engine, email, now=app.now())
    click.echo(plain(f"removed operator {removed.email}"))


@admin.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {\"operators\": [{\"email\", \"created\"}]}.")
@pass_app
def list_command(app: App, as_json: bool) -> None:
    """The console accounts, oldest first."""
    from newsletter.usecases.operators import list_operators

    found = list_operators(app.open_store().engine)
    if as_json:
        click.echo(json.dumps({"operators": [{"email": o.email, "created": o.created.isoformat(),
                                              "password_changed": o.password_changed.isoformat()} for o in found]},
                              indent=2, ensure_ascii=False))
        return
    for operator in found:
        click.echo(plain(f"{operator.email}  (since {operator.created:%Y-%m-%d}; password set "
                         f"{operator.password_changed:%Y-%m-%d %H:%M} UTC)"))
    if not found:
        click.echo("no operator accounts; `newsletter admin add EMAIL` creates one")


@admin.command()
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Newest entries shown.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: {\"entries\": [{\"id\", \"at\", \"actor\", \"action\", \"detail\"}]}.")
@pass_app
def audit(app: App, limit: int, as_json: bool) -> None:
    """The audit log: who did what in the console (and to accounts), newest first."""
    from newsletter.usecases.operators import audit_log

    entries = audit_log(app.open_store().engine, limit=limit)
    if as_json:
        click.echo(json.dumps({"entries": [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                                            "detail": e.detail} for e in entries]}, indent=2, ensure_ascii=False))
        return
    for entry in entries:  # actors and details may be what a stranger typed (a failed sign-in's address)
        click.echo(plain(f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor}  {entry.action}  {entry.detail}".rstrip()))
