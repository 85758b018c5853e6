"""Two senders' interleavings over one ledger (claim after freeing lapsed claims, renew, mark DATA, record,
release, stall, crash):
a Hypothesis state machine looks for a schedule that transmits a row twice, or after which the ledger's tallies
differ from its rows. Real SQLite file, real ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from newsletter.storage import db
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger, NewDelivery, Outcome
from newsletter.storage.ledger_tallies import ledger_tallies

LEASE = timedelta(seconds=30)
ROWS = 2
SENDERS = st.sampled_from([0, 1])
ACTIONS = ("claim", "claim", "mark_and_transmit", "mark_and_transmit", "stall", "renew", "record_sent", "release",
           "crash")
"""Weighted towards what takes a claim over (claim, stall, mark); a stop or a crash ends a sender's plans."""


@pytest.mark.slow
def test_no_interleaving_of_two_senders_transmits_a_row_twice(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.connect() as connection:  # a model check, not a durability test: skip the fsyncs
        connection.exec_driver_sql("PRAGMA synchronous=OFF")

    class TwoSenders(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with engine.begin() as connection:
                connection.execute(db.deliveries.delete())
                connection.execute(ledger_tallies.delete())
            self.ledgers = [Ledger(engine, worker="host:1"), Ledger(engine, worker="host:2")]
            self.now = datetime(2026, 4, 27, 7, 0, tzinfo=UTC)
            self.ledgers[0].add(1, [NewDelivery(subscriber_id=i, email=f"r{i}@example.com", name="", variant_key="v",
                                                message_id=f"<{i}@x>") for i in range(ROWS)], now=self.now)
            self.held: list[dict[int, str]] = [{}, {}]
            """Rows each sender believes it holds (in its memory): id → claim token."""
            self.marked: list[set[int]] = [set(), set()]
            self.transmitted: dict[int, int] = {}

        def claim(self, sender: int) -> None:
            """What a sender does on start and per batch: free lapsed claims, then take due rows."""
            self.ledgers[sender].release_expired(1, now=self.now)
            for d in self.ledgers[sender].claim(1, limit=1, now=self.now, lease=LEASE):
                self.held[sender][d.id] = d.claim_token

        def renew(self, sender: int) -> None:
            self.ledgers[sender].renew(set(self.held[sender].values()), until=self.now + LEASE)

        def mark_and_transmit(self, sender: int) -> None:
            candidates = sorted(set(self.held[sender]) - self.marked[sender])
            if not candidates:
                return
            row = candidates[0]
            lost = self.ledgers[sender].record(data_phase=[(row, self.held[sender][row])], outcomes=[], now=self.now)
            if row in lost:  # the claim was taken over: this sender must not send
                del self.held[sender][row]
            else:
                self.marked[sender].add(row)
                self.transmitted[row] = self.transmitted.get(row, 0) + 1

        def record_sent(self, sender: int) -> None:
            candidates = sorted(self.marked[sender])
            if not candidates:
                return
            row = candidates[0]
            outcome = Outcome(delivery_id=row, state="sent", phase="data", claim_token=self.held[sender].pop(row))
            self.ledgers[sender].record(data_phase=[], outcomes=[outcome], now=self.now)
            self.marked[sender].discard(row)

        def release(self, sender: int) -> None:
            """A clean stop gives back a row not yet marked for DATA."""
            unmarked = sorted(set(self.held[sender]) - self.marked[sender])
            if unmarked:
                row = unmarked[0]
                self.ledgers[sender].release({row: self.held[sender].pop(row)}, now=self.now)

        def stall(self, sender: int) -> None:
            self.now += LEASE + timedelta(seconds=1)

        def crash(self, sender: int) -> None:
            self.held[sender], self.marked[sender] = {}, set()
            self.ledgers[1 - sender].release_expired(1, now=self.now, dead_workers=[f"host:{sender + 1}"])

        @rule(sender=SENDERS, action=st.sampled_from(ACTIONS))
        def act(self, sender: int, action: str) -> None:
            """One rule choosing the step: Hypothesis's swarm testing would otherwise switch whole rules off
            per example, and the schedules that matter need claim, stall and mark together."""
            getattr(self, action)(sender)

        @invariant()
        def never_twice(self) -> None:
            assert all(n <= 1 for n in self.transmitted.values()), self.transmitted

        @invariant()
        def tallies_count_the_rows(self) -> None:
            tallies, counts = self.ledgers[0].tallies(1), self.ledgers[0].counts(1)
            assert {state: tallies[state] for state in counts} == counts, (tallies, counts)

        @invariant()
        def sent_rows_were_transmitted(self) -> None:
            for row in self.ledgers[0].rows(1, state="sent"):
                assert self.transmitted.get(row["id"]) == 1

    run_state_machine_as_test(TwoSenders, settings=settings(max_examples=100, stateful_step_count=25, deadline=None,
                                                            suppress_health_check=[HealthCheck.too_slow]))
