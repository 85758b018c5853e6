"""Claims a sending process holds: keep them while it lives, take back those of senders that died.

A claim is a ledger row's lease: a live sender renews it, so only a dead process's claims ever lapse; a
sender of this host that is provably dead (no process has its pid) loses its claims at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import Clock
from newsletter.delivery.ledger_writer import one_line
from newsletter.storage.ledger import Ledger

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def dead_senders(workers: Collection[str]) -> list[str]:
    """Of these senders (host:pid), those provably dead: on this host, and no process has that pid."""
    host = socket.gethostname()
    dead = []
    for worker in workers:
        where, _, pid = worker.rpartition(":")
        if where == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            dead.append(worker)
    return dead


def release_dead_claims(ledger: Ledger, edition_id: int, *, now: datetime) -> tuple[int, int]:
    """Free lapsed claims, and at once those of senders of this host that died (a resume after a crash)."""
    dead = dead_senders(ledger.claim_holders(edition_id))
    if dead:
        log.info("releasing the claims of dead senders %s", ", ".join(sorted(dead)))
    return ledger.release_expired(edition_id, now=now, dead_workers=dead)


async def renew_leases(ledger: Ledger, tokens: Callable[[], Collection[str]], *, lease: timedelta,
                       clock: Clock) -> None:
    """A live sender keeps its claims: only a dead process's claims ever expire.

    A failed renewal is logged and tried again at the next tick: if the lease lapses meanwhile, fencing
    makes sure a row another sender took over is not sent by this one.
    """
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        try:
            await asyncio.to_thread(ledger.renew, set(tokens()), until=clock() + lease)
        except SQLAlchemyError as error:
            log.warning("could not renew the claims' lease (%s); trying again", one_line(error))
