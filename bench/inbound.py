"""Benchmark of inbound mail: how many returned messages a second one process classifies and applies.

Why: after a large edition to an old list, the bounces of a few percent of it arrive within minutes, and
the listener answers each only after its commit; the host is small (2 cores). No target was set by the
issue; this measures where the time goes, classification against the database work.

How: flufl.bounce's 117 real bounces (the sdist the tests use), each sent to a fresh reader's VERP
address with a fresh Message-ID, ``--rounds`` times over, into a new SQLite file (or, with ``--postgres``, a
scratch database on the tests' PostgreSQL server). ``classify`` alone is timed on the same messages first.
Then the messages are handled ``--batch`` at a time (``InboundProcessor.handle_batch``: one transaction per
batch, what the listener does when messages arrive faster than one commit; ``--batch 1`` is one message per
transaction, what it does when they arrive one by one). ``--baseline TREE`` first runs that checkout's own
``bench/inbound.py`` (the code before batches) in a subprocess, in the same run.

    python bench/inbound.py               # 10 rounds: 1,170 messages, batches of 200, SQLite
    python bench/inbound.py --postgres --baseline /tmp/main-tree
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("BENCH_CODE") or str(Path(__file__).resolve().parent.parent))

from newsletter.inbound.classify import InboundAddresses, classify
from tests.inbound_support import DOMAIN, bounce_corpus, make_inbound


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _database(folder: str, *, postgres: bool) -> str:
    if not postgres:
        return f"sqlite:///{folder}/bench.db"
    from tests.databases import PostgresServer
    from tests.services import admin_url

    server = PostgresServer(admin_url())
    server.check()
    atexit.register(server.drop_all)
    return server.create()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=200, help="messages per transaction (default 200)")
    parser.add_argument("--postgres", action="store_true", help="a scratch PostgreSQL database instead of SQLite")
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="first run this script with that checkout's code, one message per handle() call")
    parser.add_argument("--per-message", action="store_true", help="call handle() per message (the old API)")
    options = parser.parse_args()
    if options.baseline is not None:
        print(f"baseline ({options.baseline}, one handle() per message):", flush=True)
        subprocess.run([sys.executable, __file__, "--rounds", str(options.rounds), "--per-message",
                        *(["--postgres"] if options.postgres else [])], check=True,
                       env={**os.environ, "PYTHONPATH": str(options.baseline), "BENCH_CODE": str(options.baseline)})
        print("this tree:", flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {'PostgreSQL' if options.postgres else 'SQLite'}")
    samples = [p.read_bytes() for p in sorted(bounce_corpus().glob("*.txt"))]
    messages = []
    for round_ in range(options.rounds):
        for number, raw in enumerate(samples):
            messages.append(f"Message-ID: <bench-{round_}-{number}@relay>\r\n".encode() + raw)
    addresses = InboundAddresses(domain=DOMAIN)
    wall, cpu = time.perf_counter(), _cpu()
    for raw in messages:
        classify(raw, recipients=[f"bounces@{DOMAIN}"], addresses=addresses)
    classify_wall, classify_cpu = time.perf_counter() - wall, _cpu() - cpu
    with tempfile.TemporaryDirectory() as folder:
        inbound = make_inbound(_database(folder, postgres=options.postgres))
        readers = [inbound.add(f"reader{n}@example.net") for n in range(len(messages))]
        verps = [inbound.verp(reader) for reader in readers]
        wall, cpu = time.perf_counter(), _cpu()
        outcomes: dict[str, int] = {}
        if options.per_message:
            for raw, verp in zip(messages, verps, strict=True):
                outcome = inbound.processor.handle(raw, recipients=[verp], door="smtp")
                outcomes[outcome.outcome] = outcomes.get(outcome.outcome, 0) + 1
        else:
            from newsletter.inbound.process import Incoming

            incoming = [Incoming(raw=raw, recipients=(verp,), door="smtp")
                        for raw, verp in zip(messages, verps, strict=True)]
            for start in range(0, len(incoming), options.batch):
                for outcome in inbound.processor.handle_batch(incoming[start:start + options.batch]):
                    outcomes[outcome.outcome] = outcomes.get(outcome.outcome, 0) + 1
        handle_wall, handle_cpu = time.perf_counter() - wall, _cpu() - cpu
        inbound.processor.engine.dispose()
    count = len(messages)
    print(f"{count} messages ({options.rounds} rounds of {len(samples)}): {outcomes}")
    print(f"classify only:        {count / classify_wall:8.0f} msg/s, {classify_cpu / count * 1e6:7.0f} µs CPU/msg")
    print(f"classify+apply+commit: {count / handle_wall:7.0f} msg/s, {handle_cpu / count * 1e6:7.0f} µs CPU/msg "
          f"({'one per transaction' if options.per_message else f'batches of {options.batch}'}; "
          "CPU of this process only, not the PostgreSQL server's)")


if __name__ == "__main__":
    main()
