"""What one progress poll of `send --workers` costs PostgreSQL, by the size of the edition (issue 30).

Why: the dispatcher (``Dispatcher.run``) reads the ledger every ``poll_seconds`` while the workers send. It
used to count the edition's rows (``Ledger.counts``, ``outstanding``, ``halt_reason``) at every poll: work
that grows with the list and, poll after poll, with the send's duration. It now reads the edition's tallies
(``Ledger.tallies``) and the deferred rows due (``deferred_due``). This measures both on the same ledger.

How: a scratch PostgreSQL database; an edition of N ledger rows added through ``Ledger.add``; half of them
claimed and recorded ``sent`` through ``Ledger.claim`` / ``Ledger.record`` (a send half done: the sent rows'
old versions are still in the table and its indexes, as mid-send); then P polls of each kind, alternating,
on one connection. Reported per poll: the PostgreSQL backend's CPU (``/proc/<pid>/stat`` of that connection's
server process) and the wall time. Both kinds read the same answer: checked.

    python bench/poll.py                         # 10,000 and 100,000 rows, 40 polls of each kind
    python bench/poll.py --sizes 1000000 --polls 10
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from send import cpu_seconds_of
from send_workers import Databases

from newsletter.storage.db import open_database
from newsletter.storage.ledger import STATES, Ledger, NewDelivery, Outcome

EDITION = 1
START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def fill(ledger: Ledger, size: int) -> None:
    for start in range(0, size, 10_000):
        ledger.add(EDITION, [NewDelivery(subscriber_id=i, email=f"r{i}@example.org", name="", variant_key="v",
                                         message_id=f"<{EDITION}.{i}@example.org>")
                             for i in range(start, min(size, start + 10_000))], now=START)
    done = 0
    while done < size // 2:
        batch = ledger.claim(EDITION, limit=min(5_000, size // 2 - done), now=START, lease=timedelta(minutes=5))
        ledger.record(data_phase=[], now=START, outcomes=[
            Outcome(delivery_id=d.id, state="sent", phase="data", code=250, claim_token=d.claim_token)
            for d in batch])
        done += len(batch)


def old_poll(ledger: Ledger) -> tuple[int, dict[str, int]]:
    """What main's dispatcher read at each poll (before the tallies)."""
    ledger.release_expired(EDITION, now=START)
    counts = ledger.counts(EDITION)
    left = ledger.outstanding(EDITION, due_by=START)
    ledger.halt_reason(EDITION, since=START)
    return left, counts


def new_poll(ledger: Ledger) -> tuple[int, dict[str, int]]:
    """What the dispatcher reads at each poll now (``halt_reason`` only once the ``halts`` tally grew)."""
    ledger.release_expired(EDITION, now=START)
    tallies = ledger.tallies(EDITION)
    counts = {state: tallies[state] for state in STATES}
    return counts["pending"] + counts["claimed"] + ledger.deferred_due(EDITION, due_by=START), counts


def measure(engine: sa.Engine, ledger: Ledger, poll: Callable[[Ledger], tuple[int, dict[str, int]]],
            polls: int) -> tuple[float, float, tuple[int, dict[str, int]]]:
    with engine.connect() as connection:
        pid = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    answer = poll(ledger)  # warm: the plan cached, the pages in memory
    cpu, wall = cpu_seconds_of(pid), time.perf_counter()
    for _ in range(polls):
        if poll(ledger) != answer:
            raise SystemExit("the ledger changed during the measurement")
    wall, cpu = time.perf_counter() - wall, cpu_seconds_of(pid) - cpu
    with engine.connect() as connection:
        if int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()) != pid:
            raise SystemExit("the polls did not all run on one connection")
    return cpu / polls, wall / polls, answer


def run(sizes: Sequence[int], polls: int) -> None:
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    print("| ledger rows (half sent) | poll | PostgreSQL CPU per poll, ms | wall per poll, ms |")
    print("| ---: | --- | ---: | ---: |")
    databases = Databases()
    try:
        for size in sizes:
            url = databases.url(databases.create())
            open_database(url).dispose()  # creates the schema (the migrations)
            engine = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=1, max_overflow=0)
            ledger = Ledger(engine, worker="bench:1")
            fill(ledger, size)
            results = {}
            for name, poll in (("counts (main)", old_poll), ("tallies", new_poll)):
                results[name] = measure(engine, ledger, poll, polls)
            if results["counts (main)"][2] != results["tallies"][2]:
                raise SystemExit(f"the two polls disagree: {results}")
            for name, (cpu, wall, _) in results.items():
                print(f"| {size:,} | {name} | {1e3 * cpu:.2f} | {1e3 * wall:.2f} |")
            engine.dispose()
    finally:
        databases.drop_all()
    print(f"load average at end {os.getloadavg()[0]:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--polls", type=int, default=40, help="polls of each kind per size")
    args = parser.parse_args(argv)
    run(args.sizes, args.polls)


if __name__ == "__main__":
    main()
