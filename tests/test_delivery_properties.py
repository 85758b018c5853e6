"""Property: whatever the faults, no recipient ever gets two copies, and nothing is left unaccounted for."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import DeliverySettings
from newsletter.delivery.sending import deliver
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from tests.mailsink import Fault, MailSink
from tests.test_delivery import EDITION, Clock, build, fill

RECIPIENTS = 8
FAULTS = st.one_of(
    st.builds(Fault, phase=st.sampled_from(["mail", "rcpt", "data", "dot"]), action=st.just("drop"),
              times=st.integers(1, 3)),
    st.builds(Fault, phase=st.sampled_from(["mail", "rcpt", "data", "dot"]), action=st.just("reply"),
              reply=st.sampled_from(["451 4.7.1 Slow down", "421 4.3.2 Closing", "550 5.1.1 No such user",
                                     "452 4.2.2 Mailbox full", "554 5.7.1 Rejected"]),
              times=st.integers(1, 3)),
    st.builds(Fault, phase=st.sampled_from(["rcpt", "dot"]), action=st.just("reply"),
              reply=st.just("451 4.7.1 Greylisted"),
              recipient=st.sampled_from([f"reader{i}@example.com" for i in range(RECIPIENTS)]),
              times=st.integers(1, 2)),
)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=st.lists(FAULTS, max_size=5), concurrency=st.integers(1, 4))
def test_never_two_copies_and_nothing_left_pending(faults: list[Fault], concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder, MailSink() as sink:
        ledger = Ledger(open_database(f"sqlite:///{Path(folder) / 'l.db'}"), worker="prop")
        fill(ledger, RECIPIENTS)
        for fault in faults:
            sink.add_fault(fault)
        clock = Clock()
        config = DeliverySettings(port=sink.port, concurrency=concurrency, timeout_seconds=2, claim_batch=3,
                                  max_attempts=4, retry_base_seconds=1)
        for _ in range(6):  # runs while the faults fire; later runs see a healthy server
            asyncio.run(deliver(ledger.engine, settings=config, sender="p@example.org", edition_id=EDITION,
                                build_message=build, clock=clock))
            clock.now += timedelta(hours=1)
        counts = ledger.counts(EDITION)
        copies = {address: len(messages) for address, messages in sink.by_recipient().items()}
        assert all(n == 1 for n in copies.values()), copies
        assert counts["pending"] == 0
        assert counts["claimed"] == 0
        assert counts["sent"] == sum(
            1 for r in ledger.rows(EDITION, state="sent") if copies.get(r["email"]) == 1
        )
        for row in ledger.rows(EDITION, state="ambiguous"):
            assert copies.get(row["email"], 0) <= 1
        assert sum(counts.values()) == RECIPIENTS
