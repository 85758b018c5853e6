"""One sending process of `send --processes N`: ``python -m newsletter.delivery.child CONFIG EDITION_ID [LIMIT]``.

A module of its own, started with ``-m``, so a child imports only what sending needs (no topic matcher,
no scikit-learn, no Jinja or Premailer, no chat clients, no dkimpy unless messages are signed, no alembic):
what a child costs before its first message is paid once per process and send (tests/test_send.py). It
prints its counts as one JSON line on stdout; SIGTERM/SIGINT stop it cleanly, like `send` itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from pathlib import Path

from newsletter.config import load_settings
from newsletter.delivery.pool import RunStats
from newsletter.delivery.sending import deliver_edition
from newsletter.errors import NewsletterError
from newsletter.storage.db import create_engine
from newsletter.storage.editions import EditionStore
from newsletter.storage.webhook_events import attach as attach_webhooks


def run(config_path: Path, edition_id: int, limit: int | None) -> RunStats:
    settings = load_settings(config_path)
    # The parent `send` opened (and migrated) this database before starting us: no migration check here, which
    # would load alembic and every migration script in each child (~0.2 s of CPU before the first message).
    engine = create_engine(settings.newsletter.database_url)
    attach_webhooks(engine, [(w.url, w.events) for w in settings.webhooks])  # a bounce here is an event too
    edition = EditionStore(engine).get_by_id(edition_id)
    if edition is None:
        raise NewsletterError(f"no edition with id {edition_id}")

    async def main() -> RunStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await deliver_edition(settings, engine, edition, stop=stop, limit=limit)

    return asyncio.run(main())


def main(arguments: list[str]) -> int:
    try:
        stats = run(Path(arguments[0]), int(arguments[1]), int(arguments[2]) if len(arguments) > 2 else None)
    except NewsletterError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
