"""What `newsletter demo` prints after sending, and `demo --serve`: kept out of ``sending.py``."""

from __future__ import annotations

import asyncio

from newsletter.cli.app import console
from newsletter.cli.output import term
from newsletter.cli.words import plural
from newsletter.demo.run import DemoResult


def print_demo(result: DemoResult) -> None:
    """The best trending papers, then a file:// link per received email (a browser opens them)."""
    if result.trending:
        console.print("trending now:", highlight=False)
        for score, title in result.trending:
            console.print(f"  {score:5.2f}  {term(title)}", highlight=False, soft_wrap=True)
    console.print(f"received {plural(len(result.received), 'message')} (Maildir: {term(result.maildir)}); open them:",
                  highlight=False, soft_wrap=True)
    for address, path in result.emails:
        console.print(f"  {term(address)}: {term(path.as_uri())}", highlight=False, soft_wrap=True)
    config = term(result.config)
    console.print(f"config: {config} (try `newsletter --config {config} papers`)", highlight=False, soft_wrap=True)


def serve_demo(result: DemoResult, *, port: int) -> None:
    """The demo's archive and subscribe pages on 127.0.0.1 until Ctrl-C (uvicorn handles the signal)."""
    from newsletter.config import load_settings
    from newsletter.storage.db import open_database
    from newsletter.web.server import run_server

    settings = load_settings(result.config)
    engine = open_database(settings.newsletter.database_url)
    base = f"http://127.0.0.1:{port}"
    console.print(f"serving the pages until Ctrl-C: archive {base}/archive, subscribe {base}/", highlight=False,
                  soft_wrap=True)
    asyncio.run(run_server(settings, engine, host="127.0.0.1", port=port))
