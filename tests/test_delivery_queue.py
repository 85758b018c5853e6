"""Back-pressure by a bounded queue: claiming waits for room on the pool's queue, it never polls it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from newsletter.delivery.pool import Pool
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from tests.mailsink import MailSink
from tests.test_delivery import EDITION, Clock, fill, received, run, settings_for

RELAY_DELAY = 0.013


def test_the_queue_never_holds_more_than_a_claim_batch_and_nothing_polls_it(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(open_database(f"sqlite:///{tmp_path / 'store.db'}"), worker="test")
    emails = fill(ledger, 40)
    sink.reply_delay = RELAY_DELAY  # the relay, not the claiming side, sets the pace
    queued: list[int] = []
    real_submit = Pool.submit

    def submit(pool: Pool, claimed: object) -> None:
        real_submit(pool, claimed)  # type: ignore[arg-type]
        queued.append(pool.queue.qsize())

    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: object = None) -> object:
        sleeps.append(delay)
        return await real_sleep(delay, result)

    monkeypatch.setattr(Pool, "submit", submit)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    counts = run(ledger, settings_for(sink, concurrency=1, claim_batch=5), Clock())
    assert counts["sent"] == 40
    assert received(sink) == dict.fromkeys(emails, 1)
    assert len(queued) == 40
    assert max(queued) == 5  # full at times (the relay is the slow side), never beyond one claim batch
    # no back-pressure by sleeping and looking again (the only short sleeps are the relay's own delay)
    assert [delay for delay in sleeps if 0 < delay < 1 and delay != RELAY_DELAY] == []
    assert sleeps.count(RELAY_DELAY) == 40
    assert ledger.counts(EDITION)["claimed"] == 0
