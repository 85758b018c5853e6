"""`newsletter demo`: the whole pipeline on bundled real feeds, delivered over real SMTP, offline.

In a temporary folder: a config that reads the feed snapshots shipped with the project, a few sample
subscribers with different topics, and an embedded SMTP server on 127.0.0.1 that stores what it receives
as a Maildir. Then fetch → edition → render → send, exactly as in production.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from newsletter.config import Settings, load_settings
from newsletter.delivery.sending import SendReport
from newsletter.demo.maildir_server import MaildirServer
from newsletter.demo.showcase import feeds_day, with_as_of, write_html
from newsletter.matching.trending import trending_score
from newsletter.records.papers import SourceReport
from newsletter.storage.db import open_database
from newsletter.storage.papers import PaperStore
from newsletter.usecases.fetch import fetch_sources
from newsletter.usecases.send import run_send
from subscribers.store import SubscriberStore

SAMPLE_SUBSCRIBERS = (
    ("ada@example.org", "Ada Lovelace", ("agents", "reasoning")),
    ("alan@example.org", "Alan Turing", ("reasoning", "safety-alignment")),
    ("grace@example.org", "Grace Hopper", ("efficient-training", "vision-multimodal")),
    ("katherine@example.org", "Katherine Johnson", ("retrieval", "agents", "efficient-training")),
    ("edsger@example.org", "Edsger Dijkstra", ("agents", "reasoning")),
)


def examples_dir() -> Path:
    """``examples/`` in a source checkout, ``newsletter/_examples`` in an installed wheel."""
    packaged = Path(__file__).parent.parent / "_examples"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    fetch: list[SourceReport]
    send: SendReport
    maildir: Path
    received: list[Path]
    emails: list[tuple[str, Path]]
    """(recipient, .html file) of every received message, to open in a browser."""
    config: Path
    as_of: datetime | None
    """The day trending ages count from: the feeds' own (see ``newsletter.demo.showcase``)."""
    trending: list[tuple[float, str]]
    """The best trending scores and their papers' titles."""


def write_demo_config(folder: Path, *, smtp_port: int, web_port: int = 8000) -> Path:
    """The offline example, pointed at the bundled feeds, a database in ``folder`` and the local server."""
    examples = examples_dir()
    text = (examples / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('base_url = "http://127.0.0.1:8000"', f'base_url = "http://127.0.0.1:{web_port}"')
    text = text.replace("\nport = 8000\n", f"\nport = {web_port}\n")
    text = text.replace('url = "feeds/', f'url = "{examples / "feeds"}/')
    text = text.replace('database_url = "sqlite:///offline.db"', 'database_url = "sqlite:///demo.db"')
    text += f'\n[delivery]\nhost = "127.0.0.1"\nport = {smtp_port}\nconcurrency = 4\n'
    path = folder / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def top_trending(settings: Settings, papers: PaperStore, *, now: datetime, count: int = 3) -> list[tuple[float, str]]:
    """The ``count`` highest trending scores and their papers' titles, best first."""
    scored = [(trending_score(p, now=now, settings=settings.trending).value, p.title) for p in papers.papers()]
    return sorted(scored, key=lambda item: -item[0])[:count]


def run_demo(*, folder: Path | None = None, say: Callable[[str], None] = print, web_port: int = 8000) -> DemoResult:
    import asyncio

    # absolute: the result names its files as file:// links, which a relative path cannot be
    folder = (folder or Path(tempfile.mkdtemp(prefix="newsletter-demo-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    maildir = folder / "Maildir"
    with MaildirServer(maildir) as sink:
        config_path = write_demo_config(folder, smtp_port=sink.port, web_port=web_port)
        settings: Settings = load_settings(config_path)
        os.environ.setdefault(settings.newsletter.secret_env, secrets.token_urlsafe(32))
        engine = open_database(settings.newsletter.database_url)
        now = datetime.now(UTC)
        say(f"demo folder: {folder}")
        say(f"SMTP server: 127.0.0.1:{sink.port} (stores a Maildir in {maildir})")
        reports = asyncio.run(fetch_sources(settings, PaperStore(engine), now=now))
        say(f"fetched {len(reports)} sources: {sum(r.new for r in reports)} new papers")
        as_of = feeds_day(PaperStore(engine).papers())
        if as_of is not None:  # the snapshots are old: score them as of their own day, not today
            config_path.write_text(with_as_of(config_path.read_text(encoding="utf-8"), as_of), encoding="utf-8")
            settings = load_settings(config_path)
            say(f"trending scores as of the feeds' own day, {as_of:%Y-%m-%d %H:%M} UTC ([trending] as_of)")
        people = SubscriberStore(engine)
        for email, name, topics in SAMPLE_SUBSCRIBERS:
            if people.get_by_email(email) is None:
                people.add(email, name=name, topics=topics, frequency="daily", source="cli", now=now)
        say(f"subscribers: {len(SAMPLE_SUBSCRIBERS)} with different topics")
        result = run_send(settings, engine, frequency="daily", on_prepare=lambda line: None)
        sink.stop()
    received = list(sink.paths)
    return DemoResult(folder=folder, fetch=reports, send=result, maildir=maildir, received=received,
                      emails=write_html(received, folder / "emails"), config=config_path, as_of=as_of,
                      trending=top_trending(settings, PaperStore(engine), now=now))
