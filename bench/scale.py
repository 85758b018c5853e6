"""Scale: prepare + send + inbound at 10,000-100,000 readers, on SQLite and on PostgreSQL with Celery workers.

Why: issue 30 asks what 100,000 readers cost end to end (the ledger fill and renders, the send, the bounce
storm after it), whether memory stays flat as the list grows, and what a 1,000,000-reader list would need;
docs/scale-out.md's capacity model is checked against these runs.

How (everything through the library, as an operator runs it; the pieces are bench/send.py's and
bench/send_workers.py's, with an [inbound] domain set so every message carries its signed VERP sender):

* SQLite, per size — ``send.set_up``: fetch the bundled feeds, insert N subscribers (50 topic subsets,
  997 domains), ``campaign.prepare`` (timed: the renders and the ledger fill). Then ``run_send`` with 1
  process to Postfix's smtp-sink in a fresh process (wall, CPU, peak RSS = VmHWM); smtp-sink's count is
  checked against the ledger. Then inbound in another fresh process: a 2 % bounce storm — one RFC 3464
  report (as Postfix writes it) to the VERP address of every 50th reader — each handed to the
  ``InboundProcessor`` of the config (classify, attribute, apply, commit); every bounced reader is checked.
* PostgreSQL + W workers (``--postgres``) — ``send_workers.set_up`` on a scratch database (the same
  readers), ``send_workers.workers_run`` with W `newsletter worker` processes (Celery over Redis,
  ``concurrency 1`` each, 16 SMTP connections per batch of 500), from the first enqueue until every row was
  tried; the PostgreSQL backends' CPU and ``pg_stat_database`` deltas (transactions, row writes) and the
  database size are read around the run; then the same inbound storm against that database.

Every run must deliver each reader exactly once (ledger ``sent`` == smtp-sink's count == readers) and bounce
exactly the readers the storm names; otherwise the script exits 1.

    python bench/scale.py --sizes 10000,100000                 # SQLite at both sizes
    python bench/scale.py --sizes 100000 --postgres 2 --no-sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.inbound_support, for the reports

import send
import send_workers

ROOT = Path(__file__).resolve().parent.parent
BOUNCE_EVERY = 50
"""Every 50th reader bounces: a 2 % hard-bounce storm (the issue's figure)."""


def say(line: str = "") -> None:
    print(line, flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- inbound (a fresh process: `python bench/scale.py --worker JSON`) ----------------------------------------


def worker_inbound(spec: dict[str, Any]) -> dict[str, Any]:
    """Bounce reports to the VERP address of every ``BOUNCE_EVERY``-th reader of the edition, processed one by one."""
    import sqlalchemy as sa

    from newsletter.config import load_settings
    from newsletter.delivery.verp import envelope_sender
    from newsletter.inbound.process import processor_for
    from newsletter.storage import db
    from newsletter.storage.db import open_database
    from subscribers.store import SubscriberStore
    from subscribers.tokens import Keyring
    from tests.inbound_support import dsn

    settings = load_settings(Path(spec["config"]))
    engine = open_database(spec.get("database_url") or settings.newsletter.database_url)
    edition_id = int(spec["edition_id"])
    deliveries = db.deliveries
    with engine.connect() as connection:
        readers = connection.execute(
            sa.select(deliveries.c.subscriber_id, deliveries.c.email)
            .where(deliveries.c.edition_id == edition_id, deliveries.c.state == "sent",
                   deliveries.c.subscriber_id % BOUNCE_EVERY == 0)
            .order_by(deliveries.c.subscriber_id)
        ).all()
    keyring = Keyring.parse(os.environ.get(settings.newsletter.secret_env))
    inbound = settings.inbound
    messages = [
        (dsn(to=(verp := envelope_sender(keyring, local_part=inbound.bounce_local_part, domain=inbound.domain,
                                         edition_id=edition_id, subscriber_id=subscriber_id)),
             final_recipient=email, status="5.1.1", message_id=f"<scale-{subscriber_id}@relay.example.org>"), verp)
        for subscriber_id, email in readers
    ]
    processor = processor_for(settings, engine)
    before_rss = send.vm_hwm_kib()
    outcomes: dict[str, int] = {}
    cpu, started = _cpu(), time.perf_counter()
    for raw, verp in messages:
        outcome = processor.handle(raw, recipients=[verp], door="smtp")
        outcomes[outcome.outcome] = outcomes.get(outcome.outcome, 0) + 1
    wall, cpu = time.perf_counter() - started, _cpu() - cpu
    bounced = SubscriberStore(engine).counts_by_status().get("bounced", 0)
    engine.dispose()
    return {"messages": len(messages), "outcomes": outcomes, "wall": wall, "cpu": cpu, "bounced": bounced,
            "rss_before_kib": before_rss, "rss_kib": send.vm_hwm_kib()}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    process = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                             capture_output=True, text=True, cwd=ROOT, check=False)
    if process.returncode != 0 or not process.stdout.strip():
        sys.stderr.write(process.stdout + process.stderr)
        raise SystemExit(f"worker {spec['kind']} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(process.stdout.strip().splitlines()[-1])
    return result


def inbound_line(result: dict[str, Any]) -> str:
    n = result["messages"]
    return (f"inbound: {n:,} bounce reports in {result['wall']:.1f} s ({n / result['wall']:,.0f} msg/s, "
            f"{1e6 * result['cpu'] / max(1, n):,.0f} µs CPU each), outcomes {result['outcomes']}, "
            f"{result['bounced']:,} readers bounced, peak RSS {send.mib(result['rss_kib']):.0f} MiB")


# --- the runs ------------------------------------------------------------------------------------------------


def sqlite_size(folder: Path, size: int, args: argparse.Namespace) -> dict[str, Any]:
    say(f"SQLite, {size:,} readers")
    send.EXTRA_CONFIG = send.INBOUND_TABLE
    cpu = _cpu()
    prepared = send.set_up(folder / f"sqlite-{size}", recipients=size)
    setup_cpu = _cpu() - cpu
    setup_rss = send.vm_hwm_kib()
    row, result = send.library_run(prepared, f"1 process → smtp-sink, {size:,} readers", folder="send", processes=1,
                                   concurrency=args.concurrency, claim_batch=args.claim_batch, latency=None)
    say(f"  send: {row.sent:,} sent, smtp-sink got {row.received:,}, {row.wall:.1f} s ({row.rate:,.0f} msg/s), "
        f"{1e6 * row.cpu / max(1, row.sent):,.0f} µs CPU/msg, peak RSS {row.rss_mib:.0f} MiB; {row.note}")
    inbound = run_worker({"kind": "inbound", "config": str(prepared.folder / "send" / "bench.toml"),
                          "edition_id": prepared.edition_id})
    say(f"  {inbound_line(inbound)}")
    ok = (row.sent == row.received == size and inbound["bounced"] == inbound["messages"]
          == inbound["outcomes"].get("applied", 0))
    result_folder = prepared.folder
    if not args.keep:
        shutil.rmtree(result_folder, ignore_errors=True)
    return {"database": "sqlite", "readers": size, "ok": ok, "prepare_s": prepared.prepare_s,
            "insert_s": prepared.insert_s, "setup_cpu_s": setup_cpu, "setup_rss_kib": setup_rss,
            "send": {"sent": row.sent, "received": row.received, "wall": row.wall, "cpu": row.cpu,
                     "rate": row.rate, "rss_mib": row.rss_mib, "sink_cpu": result["sink_cpu"],
                     "others": row.others}, "inbound": inbound, "load": os.getloadavg()}


def postgres_size(folder: Path, size: int, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    say(f"PostgreSQL + {workers} Celery workers, {size:,} readers")
    send_workers.EXTRA_CONFIG = send.INBOUND_TABLE
    options = argparse.Namespace(recipients=size, concurrency=args.concurrency, batch_size=args.claim_batch)
    databases = send_workers.Databases()
    try:
        with send_workers.ScratchRedis() as redis_db:
            setup = send_workers.set_up(folder, databases, broker=redis_db.url, queue="setup", args=options)
            row = send_workers.workers_run(folder, databases, setup, workers=workers, broker=redis_db.url,
                                           args=options)
        stats = row.database_stats
        say(f"  send: {row.sent:,} sent, smtp-sink got {row.received:,}, {row.seconds:.1f} s ({row.rate:,.0f} msg/s), "
            f"workers {1e6 * row.sender_cpu / max(1, row.sent):,.0f} µs CPU/msg, PostgreSQL backends "
            f"{1e6 * row.postgres_cpu / max(1, row.sent):,.0f} µs CPU/msg, worker peaks "
            f"{', '.join(f'{send.mib(k):.0f}' for k in row.peaks_kib)} MiB; {stats.get('xact_commit', 0):,} commits, "
            f"{stats.get('tup_updated', 0) + stats.get('tup_inserted', 0):,} rows written, database "
            f"{stats.get('size_bytes', 0) / 2**20:,.0f} MiB after")
        config = folder / f"workers-{workers}.toml"
        inbound = run_worker({"kind": "inbound", "config": str(config), "edition_id": setup.edition_id,
                              "database_url": row.database})
        say(f"  {inbound_line(inbound)}")
    finally:
        databases.drop_all()
    ok = (row.sent == row.received == size and inbound["bounced"] == inbound["messages"]
          == inbound["outcomes"].get("applied", 0))
    return {"database": "postgresql", "workers": workers, "readers": size, "ok": ok, "prepare_s": setup.prepare_s,
            "insert_s": setup.insert_s,
            "send": {"sent": row.sent, "received": row.received, "wall": row.seconds, "cpu": row.sender_cpu,
                     "rate": row.rate, "postgres_cpu": row.postgres_cpu, "machine_cpu": row.machine_cpu,
                     "peaks_kib": row.peaks_kib, "requeued": row.requeued, "database_stats": stats},
            "inbound": inbound, "load": os.getloadavg()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000],
                        help="reader counts, comma-separated (default 10000,100000)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite runs")
    parser.add_argument("--postgres", type=int, default=0, metavar="W",
                        help="also run on PostgreSQL with W Celery workers (needs PostgreSQL and Redis on 127.0.0.1)")
    parser.add_argument("--concurrency", type=int, default=16, help="SMTP connections per process or batch")
    parser.add_argument("--claim-batch", type=int, default=500, help="claim_batch (and the workers' batch_size)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite folders (printed)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps({"inbound": worker_inbound}[spec["kind"]](spec)), flush=True)
        return 0
    os.environ.setdefault(send.SECRET_ENV, secrets.token_urlsafe(32))
    say(f"machine: {send.machine()}")
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for size in args.sizes:
            if not args.no_sqlite:
                results.append(sqlite_size(folder, size, args))
            if args.postgres:
                results.append(postgres_size(folder, size, args.postgres, args))
    finally:
        if args.keep:
            say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    say(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s; load average now "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for result in results:
        verdict = "every reader sent once, every bounce applied" if result["ok"] else "MISMATCH"
        say(f"  {result['database']} {result['readers']:,}: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
