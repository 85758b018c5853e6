"""What every command shares: the lazily loaded settings and store, error handling, the console."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from newsletter.cli.words import plural
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError
from subscribers.errors import SubscribersError

if TYPE_CHECKING:
    from newsletter.storage.papers import PaperStore



class App:
    """What every command needs, loaded on first use so `--help` works without a config file."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def store(self) -> PaperStore:
        from newsletter.storage.db import is_new, open_database  # SQLAlchemy and Alembic: not needed for --help
        from newsletter.storage.papers import PaperStore

        url = self.settings.newsletter.database_url
        engine = open_database(url)
        command = _running_command()
        if is_new(engine) and command in READ_ONLY_COMMANDS:
            shown = engine.url.render_as_string(hide_password=True)
            click.echo(f"warning: {shown} did not exist or was empty, so it is a new, empty database; is "
                       "[newsletter] database_url (or --config) mistyped?", err=True)
        from newsletter.service.topic_changes import reconcile_topics

        changes = reconcile_topics(self.settings, engine, now=self.now(), orphans=command in ("fetch", "status"))
        for move, count in changes.renamed.items():
            click.echo(f"topic renamed ({move}): moved {plural(count, 'reader')}", err=True)
        for slug, count in changes.added.items():
            click.echo(f"new topic {slug!r}: added for {plural(count, 'reader')} of every topic", err=True)
        for line in changes.warnings():
            click.echo(f"warning: {line}", err=True)
        return PaperStore(engine)

    def now(self) -> datetime:
        return datetime.now(UTC)


READ_ONLY_COMMANDS = frozenset({"status", "papers", "topics", "preview", "subscribers list", "subscribers show",
                                "subscribers export", "edition show"})
"""Commands that only read: a new, empty database there is more likely a typo than a first run."""


def _running_command() -> str:
    context = click.get_current_context(silent=True)
    return " ".join(context.command_path.split()[1:]) if context is not None else ""


_GLOBAL_WITH_VALUE = ("--config", "--log-format")
_GLOBAL_FLAGS = ("-v", "--verbose")
UNWRAPPED_WIDTH = 100_000
"""Console width when the output is not a terminal: a pipe or a file gets whole lines, never 80 columns."""


def hoist_global_options(args: list[str], commands: set[str]) -> list[str]:
    """Move ``--config PATH``, ``--log-format F`` and ``-v`` given after the subcommand to the front.

    Operators type ``newsletter status --config x.toml`` as often as the other order; click only accepts a
    group's options before the subcommand. Nothing after ``--`` is touched, and no subcommand has options
    of these names, so moving them changes no other meaning.
    """
    front: list[str] = []
    rest: list[str] = []
    seen_command = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if not seen_command:
            rest.append(arg)
            if arg in _GLOBAL_WITH_VALUE:
                index += 1
                if index < len(args):
                    rest.append(args[index])
            elif arg in commands:
                seen_command = True
        elif arg in _GLOBAL_FLAGS or (arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE and "=" in arg):
            front.append(arg)
        elif arg in _GLOBAL_WITH_VALUE and index + 1 < len(args):
            front.extend(args[index:index + 2])
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


class NewsletterGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(args, set(self.commands))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is None and not console.is_terminal:
            console.width = UNWRAPPED_WIDTH
        try:
            return super().invoke(ctx)
        except (NewsletterError, SubscribersError) as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:
            from sqlalchemy.exc import SQLAlchemyError  # here: commands that never open a database stay light

            if not isinstance(error, SQLAlchemyError):
                raise
            cause = getattr(error, "orig", None) or error
            reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise click.ClickException(f"the database cannot be used: {reason}") from None


pass_app = click.make_pass_decorator(App)
console = Console()
