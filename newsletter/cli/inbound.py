"""`newsletter inbound`: read the mail that comes back (bounces, complaints, mailto unsubscribes)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from newsletter.cli.app import App, console, pass_app


@click.command()
@click.option("--imap", "use_imap", is_flag=True,
              help="Poll the [inbound] imap_host mailbox instead of listening for SMTP/LMTP.")
@click.option("--once", is_flag=True, help="With --imap: poll once, then exit.")
@click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Process these saved messages (.eml) instead, then exit; repeatable.")
@click.option("--rcpt", default="", help="With --file: the address the messages were sent to (e.g. the VERP one).")
@pass_app
def inbound(app: App, use_imap: bool, once: bool, files: tuple[Path, ...], rcpt: str) -> None:
    """Listen on [inbound] host:port for the bounce domain's mail (Postfix's transport for it), or poll a
    mailbox with --imap. Each message is classified (DSN, ARF complaint, older bounce formats, auto-reply,
    mailto unsubscribe), attributed to a reader by its signed VERP address, and acted on; it is acknowledged
    only once that is committed. SIGTERM/SIGINT stop it."""
    from newsletter.inbound.process import processor_for

    logging.getLogger("newsletter").setLevel(logging.INFO)
    processor = processor_for(app.settings, app.store.engine)
    if files:
        for path in files:
            outcome = processor.handle(path.read_bytes(), recipients=[rcpt] if rcpt else [], door="cli")
            console.print(f"{path}: {outcome.kind} → {outcome.outcome} ({outcome.detail})", highlight=False,
                          soft_wrap=True)
        return
    if use_imap:
        from newsletter.inbound.imap import ImapPoller, imap_password

        poller = ImapPoller(processor, app.settings.inbound, password=imap_password(app.settings.inbound))
        if once:
            report = poller.poll_once()
            console.print(f"{report.processed} processed, {report.deferred} left for the next poll", highlight=False)
            return
        poller.run_forever()
        return
    from newsletter.inbound.listener import serve_inbound

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_inbound(processor, app.settings.inbound, stop)

    asyncio.run(run())
