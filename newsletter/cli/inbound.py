"""`newsletter inbound`: read the mail that comes back (bounces, complaints, mailto unsubscribes)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import click

from newsletter.cli.app import App, console, pass_app
from newsletter.cli.output import plain, term


@click.command()
@click.option("--imap", "use_imap", is_flag=True,
              help="Poll the [inbound] imap_host mailbox instead of listening for SMTP/LMTP.")
@click.option("--once", is_flag=True, help="With --imap: poll once, then exit.")
@click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Process these saved messages (.eml) instead, then exit; repeatable.")
@click.option("--rcpt", default="", help="With --file: the address the messages were sent to (e.g. the VERP one).")
@click.option("--quarantined", is_flag=True,
              help="List the quarantined messages (unreadable mail kept) and the forged and unattributed reports "
                   "that changed no reader, then exit.")
@click.option("--raw", "raw_id", type=int,
              help="Write the bytes of quarantined message ID to standard output (to a terminal: with control "
                   "characters shown as \\x1b escapes).")
@pass_app
def inbound(app: App, use_imap: bool, once: bool, files: tuple[Path, ...], rcpt: str, quarantined: bool,
            raw_id: int | None) -> None:
    """Listen on [inbound] host:port for the bounce domain's mail (Postfix's transport for it), or poll a
    mailbox with --imap. Each message is classified (DSN, ARF complaint, older bounce formats, auto-reply,
    mailto unsubscribe), attributed to a reader by its signed VERP address, and acted on; it is acknowledged
    only once that is committed. SIGTERM/SIGINT stop it."""
    from newsletter.inbound.process import processor_for

    if quarantined or raw_id is not None:
        _quarantine(app, raw_id)
        return
    logging.getLogger("newsletter").setLevel(logging.INFO)
    processor = processor_for(app.settings, app.open_store().engine)
    if files:
        for path in files:
            outcome = processor.handle(path.read_bytes(), recipients=[rcpt] if rcpt else [], door="cli")
            console.print(term(f"{path}: {outcome.kind} → {outcome.outcome} ({outcome.detail})"), highlight=False,
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
    from newsletter.errors import InboundError
    from newsletter.inbound.listener import serve_inbound

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_inbound(processor, app.settings.inbound, stop)

    try:
        asyncio.run(run())
    except OSError as error:  # a busy port or an address this host does not have: one line, no traceback
        where = f"{app.settings.inbound.host}:{app.settings.inbound.port}"
        raise InboundError(f"cannot listen on {where}: {os.strerror(error.errno) if error.errno else error}") from None


def _quarantine(app: App, raw_id: int | None) -> None:
    from newsletter.errors import InboundError
    from newsletter.storage.inbound import InboundLog

    log = InboundLog(app.open_store().engine)
    if raw_id is not None:
        raw = log.quarantined_raw(raw_id)
        if raw is None:
            raise InboundError(f"no quarantined message {raw_id} (see `newsletter inbound --quarantined`)")
        if sys.stdout.isatty():  # a stranger's bytes: no escape sequence reaches a terminal
            for line in raw.decode("utf-8", "replace").splitlines():
                click.echo(plain(line))
        else:
            click.echo(raw, nl=False)  # to a file or a pipe: the bytes unchanged
        return
    records = log.recent(outcome="quarantined", limit=100)
    for record in records:
        console.print(term(f"{record.id}: {record.received:%Y-%m-%d %H:%M} via {record.door}: {record.detail}"),
                      highlight=False, soft_wrap=True)
    console.print(f"{len(records)} quarantined (newest first; `--raw ID` prints one)", highlight=False)
    refused = log.recent(outcome="forged", limit=100) + log.recent(outcome="unattributed", limit=100)
    for record in sorted(refused, key=lambda r: r.id, reverse=True):
        console.print(term(f"{record.id}: {record.received:%Y-%m-%d %H:%M} via {record.door}: {record.outcome} "
                           f"{record.kind}: {record.detail}"), highlight=False, soft_wrap=True)
    if refused:
        console.print(f"{len(refused)} forged or unattributed (changed no reader; their bytes are not kept)",
                      highlight=False)
