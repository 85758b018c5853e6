"""What every command shares: the lazily loaded settings, the store opened on first use, error handling, the console."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from newsletter.cli.words import plural
from newsletter.config import Settings, load_settings
from newsletter.config.redact import redact
from newsletter.errors import NewsletterError
from subscribers.errors import SubscribersError

if TYPE_CHECKING:
    from newsletter.storage.papers import PaperStore



class App:
    """What every command needs, loaded on first use so `--help` works without a config file."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._store: PaperStore | None = None

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def open_store(self) -> PaperStore:
        """Open the database (once per command) and bring readers' topics in step with ``[[topics]]``.

        A method, not a property, because it writes: renamed and added topics are applied to the stored
        readers (``service.topic_changes``) before the command reads them, and that is said on stderr.
        """
        if self._store is not None:
            return self._store
        from newsletter.storage.db import is_new, open_database  # SQLAlchemy and Alembic: not needed for --help
        from newsletter.storage.papers import PaperStore

        url = self.settings.newsletter.database_url
        engine = open_database(url)
        from newsletter.storage.webhook_events import attach

        attach(engine, [(w.url, w.events) for w in self.settings.webhooks])  # changes made here become events
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
        self._store = PaperStore(engine)
        return self._store

    def now(self) -> datetime:
        return datetime.now(UTC)


READ_ONLY_COMMANDS = frozenset({"status", "papers", "topics", "preview", "subscribers list", "subscribers show",
                                "subscribers export"})
"""Commands that read what is stored: a new, empty database there is more likely a typo than a first run.

(`edition show` is not one: with no stored edition for the day it builds and stores it, as `send` would.)"""


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
        except OSError as error:  # a file or folder the operator named, a full disk, a closed pipe
            raise click.ClickException(os_error_line(error)) from None
        except Exception as error:
            line = database_error_line(error)
            if line is None:
                raise  # a bug: the traceback is what a report needs
            raise click.ClickException(line) from None


def os_error_line(error: OSError) -> str:
    """``[Errno 2] No such file or directory: 'x/y.csv'`` as one line without the errno: what and which file."""
    what = error.strerror or str(error) or type(error).__name__
    names = [str(n) for n in (error.filename, error.filename2) if n is not None]
    return f"{what}: {' -> '.join(names)}" if names else what


def database_error_line(error: Exception) -> str | None:
    """One line for an error the database raised (a lock held too long, a lost server, a damaged file), or None.

    SQLAlchemy's own text carries the SQL statement and its parameters (readers' addresses among them) and a
    link; the line keeps only the driver's first line, with any password in a URL replaced.
    """
    if not type(error).__module__.startswith("sqlalchemy"):
        return None
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(error, SQLAlchemyError):
        return None
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"database error: {redact(text)}"


pass_app = click.make_pass_decorator(App)
console = Console()
