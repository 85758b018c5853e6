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
from newsletter.delivery.run import run_send
from newsletter.delivery.sending import SendReport
from newsletter.demo.maildir_server import MaildirServer
from newsletter.sources.ingest import fetch_sources
from newsletter.sources.records import SourceReport
from newsletter.storage.db import open_database
from newsletter.storage.papers import PaperStore
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


def write_demo_config(folder: Path, *, smtp_port: int) -> Path:
    """The offline example, pointed at the bundled feeds, a database in ``folder`` and the local server."""
    examples = examples_dir()
    text = (examples / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{examples / "feeds"}/')
    text = text.replace('database_url = "sqlite:///offline.db"', 'database_url = "sqlite:///demo.db"')
    text += f'\n[delivery]\nhost = "127.0.0.1"\nport = {smtp_port}\nconcurrency = 4\n'
    path = folder / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_demo(*, folder: Path | None = None, say: Callable[[str], None] = print) -> DemoResult:
    import asyncio

    folder = folder or Path(tempfile.mkdtemp(prefix="newsletter-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    maildir = folder / "Maildir"
    with MaildirServer(maildir) as sink:
        config_path = write_demo_config(folder, smtp_port=sink.port)
        settings: Settings = load_settings(config_path)
        os.environ.setdefault(settings.newsletter.secret_env, secrets.token_urlsafe(32))
        engine = open_database(settings.newsletter.database_url)
        now = datetime.now(UTC)
        say(f"demo folder: {folder}")
        say(f"SMTP server: 127.0.0.1:{sink.port} (stores a Maildir in {maildir})")
        reports = asyncio.run(fetch_sources(settings, PaperStore(engine), now=now))
        say(f"fetched {len(reports)} sources: {sum(r.new for r in reports)} new papers")
        people = SubscriberStore(engine)
        for email, name, topics in SAMPLE_SUBSCRIBERS:
            if people.get_by_email(email) is None:
                people.add(email, name=name, topics=topics, frequency="daily", source="cli", now=now)
        say(f"subscribers: {len(SAMPLE_SUBSCRIBERS)} with different topics")
        result = run_send(settings, engine, frequency="daily", on_prepare=lambda line: None)
        sink.stop()
    return DemoResult(folder=folder, fetch=reports, send=result, maildir=maildir, received=list(sink.paths))
