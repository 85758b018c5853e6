"""Benchmark of inbound mail: how many returned messages a second one process classifies and applies.

Why: after a large edition to an old list, the bounces of a few percent of it arrive within minutes, and
the listener answers each only after its commit; the host is small (2 cores). No target was set by the
issue; this measures where the time goes, classification against the database work.

How: flufl.bounce's 117 real bounces (the sdist the tests use), each sent to a fresh reader's VERP
address with a fresh Message-ID, ``--rounds`` times over, into a new SQLite file. ``classify`` alone is
timed on the same messages first.

    python bench/inbound.py               # 10 rounds: 1,170 messages
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.inbound.classify import InboundAddresses, classify
from tests.inbound_support import DOMAIN, bounce_corpus, make_inbound


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    options = parser.parse_args()
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
        inbound = make_inbound(f"sqlite:///{folder}/bench.db")
        readers = [inbound.add(f"reader{n}@example.net") for n in range(len(messages))]
        verps = [inbound.verp(reader) for reader in readers]
        wall, cpu = time.perf_counter(), _cpu()
        outcomes: dict[str, int] = {}
        for raw, verp in zip(messages, verps, strict=True):
            outcome = inbound.processor.handle(raw, recipients=[verp], door="smtp")
            outcomes[outcome.outcome] = outcomes.get(outcome.outcome, 0) + 1
        handle_wall, handle_cpu = time.perf_counter() - wall, _cpu() - cpu
    count = len(messages)
    print(f"{count} messages ({options.rounds} rounds of {len(samples)}): {outcomes}")
    print(f"classify only:        {count / classify_wall:8.0f} msg/s, {classify_cpu / count * 1e6:7.0f} µs CPU/msg")
    print(f"classify+apply+commit: {count / handle_wall:7.0f} msg/s, {handle_cpu / count * 1e6:7.0f} µs CPU/msg")


if __name__ == "__main__":
    main()
