"""Benchmark of scale-out delivery: PostgreSQL as the store, Celery workers over Redis, Postfix's smtp-sink.

Why: issue 8 ("Scale-out") asks what one and two `newsletter worker` processes deliver per second to
smtp-sink with PostgreSQL as the store, next to the in-process `send` on the same database.

How (everything through the library and the CLI, as an operator runs it):

* setup (not timed in the delivery rates) — a scratch PostgreSQL database ``nl_bench_<random>`` on
  127.0.0.1:5432 and an empty Redis database (1-15) with a queue of its own; a config written from
  ``examples/offline.toml`` (feeds pointed at the bundled snapshots); ``fetch_sources``; N subscribers
  inserted in bulk (50 ordered topic subsets, 997 domains); ``campaign.prepare`` fills the ledger (timed
  on its own). That database is then the template of a fresh copy per run (``CREATE DATABASE … TEMPLATE``),
  so every run starts with every row pending.
* a run with workers — W `newsletter worker` processes (each ``concurrency = 1``: one batch at a time,
  each batch over ``[delivery] concurrency`` SMTP connections) are started and awaited until ready; then
  ``workers.send_with_workers`` enqueues the due rows in batches of ``--batch-size`` and waits until every
  row was tried. msg/s = messages sent / wall time from the first enqueue to the last outcome. The workers
  then stop (SIGTERM) and smtp-sink's own count is checked against the ledger.
* a run in-process — ``send_run.run_send(processes=P)`` on a fresh copy (prepare there is a no-op on a full
  ledger and is included, as in bench/send.py).
* sink — Postfix ``smtp-sink`` (C, discards mail; a fresh one per run, its ``-c`` counter gives the count).

    python bench/send_workers.py                       # 20,000 recipients: 1 and 2 workers, 1 and 2 processes
    python bench/send_workers.py --workers 2 --recipients 50000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from send import PostfixSink, cpu_seconds_of, vm_hwm_kib

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("NEWSLETTER_BENCH_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("NEWSLETTER_BENCH_REDIS_URL") or "redis://127.0.0.1:6379"
DOMAINS = 997
EXTRA_CONFIG = ""
"""Appended to every config written (bench/scale.py adds an [inbound] table: VERP on, as a real list runs)."""


def say(line: str = "") -> None:
    print(line, flush=True)


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (all processes, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class Databases:
    """Scratch PostgreSQL databases created for this run and dropped at its end."""

    def __init__(self) -> None:
        import sqlalchemy as sa

        self.admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self.names: list[str] = []

    def url(self, name: str) -> str:
        import sqlalchemy as sa

        return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def create(self, *, template: str | None = None) -> str:
        name = f"nl_bench_{secrets.token_hex(5)}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in self.names:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


class ScratchRedis:
    """An empty Redis database (1-15), marked as ours while the benchmark runs, flushed afterwards."""

    def __enter__(self) -> Self:
        import redis

        owner = secrets.token_hex(8)
        for number in range(15, 0, -1):
            client = redis.Redis.from_url(f"{REDIS_URL}/{number}")
            if client.dbsize() == 0 and client.set("nl-bench-owner", owner, nx=True):
                self.client, self.url = client, f"{REDIS_URL}/{number}"
                return self
            client.close()
        raise SystemExit(f"no empty Redis database at {REDIS_URL}")

    def __exit__(self, *exc: object) -> None:
        self.client.flushdb()
        self.client.close()


# --- setup -------------------------------------------------------------------------------------------------


def topic_subsets(slugs: Sequence[str]) -> list[tuple[str, ...]]:
    pairs = list(itertools.permutations(slugs, 2))
    triples = list(itertools.permutations(slugs, 3))[::6]
    return [*pairs, *triples][:50]


def write_config(folder: Path, name: str, *, database_url: str, broker: str, queue: str, port: int,
                 args: argparse.Namespace) -> Path:
    from newsletter.demo.run import examples_dir

    examples = examples_dir()
    text = (examples / "offline.toml").read_text(encoding="utf-8")
    if re.search(r"^\[(delivery|workers)\]", text, re.MULTILINE):
        raise SystemExit("examples/offline.toml now has a [delivery] or [workers] table; merge into it here")
    text = text.replace('url = "feeds/', f'url = "{examples / "feeds"}/')
    text = re.sub(r'database_url = "[^"]*"', f'database_url = "{database_url}"', text)
    text += (f'\n[delivery]\nhost = "127.0.0.1"\nport = {port}\nconcurrency = {args.concurrency}\n'
             f"claim_batch = {args.batch_size}\n"
             f'\n[workers]\nbroker = "{broker}"\nqueue = "{queue}"\nbatch_size = {args.batch_size}\n'
             + EXTRA_CONFIG)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Setup:
    template: str
    edition_id: int
    recipients: int
    variants: int
    fetch_s: float
    insert_s: float
    prepare_s: float


def set_up(folder: Path, databases: Databases, *, broker: str, queue: str, args: argparse.Namespace) -> Setup:
    from newsletter.config import load_settings
    from newsletter.rendering.links import signer_from_settings
    from newsletter.storage.db import open_database
    from newsletter.storage.papers import PaperStore
    from newsletter.usecases.campaign import prepare
    from newsletter.usecases.fetch import fetch_sources
    from subscribers.schema import subscribers

    name = databases.create()
    config = write_config(folder, "setup", database_url=databases.url(name), broker=broker, queue=queue, port=25,
                          args=args)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    started = time.perf_counter()
    asyncio.run(fetch_sources(settings, PaperStore(engine), now=datetime.now(UTC)))
    fetch_s = time.perf_counter() - started
    subsets = topic_subsets([t.slug for t in settings.topics])
    now = datetime.now(UTC)
    started = time.perf_counter()
    rows = [{"email": f"reader{n}@mail{n % DOMAINS}.example", "name": f"Reader {n}", "status": "active",
             "topics": list(subsets[n % len(subsets)]), "frequency": "daily", "source": "import",
             "created": now, "updated": now} for n in range(args.recipients)]
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(subscribers.insert(), rows[start : start + 10_000])
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    prepared = prepare(settings, engine, frequency="daily", now=datetime.now(UTC), day=None,
                       signer=signer_from_settings(settings))
    prepare_s = time.perf_counter() - started
    if prepared.recipients != args.recipients:
        raise SystemExit(f"expected {args.recipients} recipients, the edition has {prepared.recipients}")
    engine.dispose()
    say(f"  setup: fetch {fetch_s:.1f} s, {args.recipients:,} subscribers {insert_s:.1f} s, prepare "
        f"({prepared.recipients:,} rows, {prepared.variants} variants) {prepare_s:.1f} s")
    return Setup(template=name, edition_id=prepared.edition.id, recipients=prepared.recipients,
                 variants=prepared.variants, fetch_s=fetch_s, insert_s=insert_s, prepare_s=prepare_s)


# --- runs --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    sent: int
    received: int
    seconds: float
    sender_cpu: float
    """CPU seconds of the sending processes (workers, or `send` and its children) during the run."""
    machine_cpu: float
    """CPU seconds of the whole machine during the run: senders, PostgreSQL, Redis, smtp-sink, anything else."""
    requeued: int = 0
    peaks_kib: list[int] = field(default_factory=list)
    """Peak RSS (VmHWM) of each worker process at the end of the run."""
    database: str = ""
    """URL of the run's database (dropped at the end of the benchmark)."""
    postgres_cpu: float = 0.0
    """CPU seconds of the PostgreSQL backends serving the run's database (workers and dispatcher)."""
    database_stats: dict[str, int] = field(default_factory=dict)
    """pg_stat_database deltas over the run (xact_commit, tup_inserted, tup_updated, ...) and the size after."""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def sender_us(self) -> float:
        return self.sender_cpu / self.sent * 1e6 if self.sent else 0.0


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def workers_run(folder: Path, databases: Databases, setup: Setup, *, workers: int, broker: str,
                args: argparse.Namespace) -> Row:
    from newsletter.config import load_settings
    from newsletter.delivery.workers import Dispatcher
    from newsletter.storage.db import open_database
    from newsletter.storage.ledger import Ledger

    name = f"workers-{workers}"
    database = databases.create(template=setup.template)
    queue = f"nl-bench-{secrets.token_hex(4)}"
    with PostfixSink(folder) as sink:
        config = write_config(folder, name, database_url=databases.url(database), broker=broker, queue=queue,
                              port=sink.port, args=args)
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for n in range(workers):
                log = folder / f"{name}-{n}.log"
                with log.open("wb") as out:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", "newsletter", "--config", str(config), "worker", "--concurrency", "1"],
                        stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ)))
                _wait_ready(processes[-1], log)
            dispatcher = Dispatcher(settings, engine)
            cpu_before = sum(cpu_seconds_of(p.pid) for p in processes)
            stats_before = database_stats(databases, database)
            backends_before = backend_cpu(databases, database)
            machine_before = machine_cpu()
            started = time.perf_counter()
            run = dispatcher.run(setup.edition_id, wait=True, poll_seconds=0.25)
            seconds = time.perf_counter() - started
            machine_used = machine_cpu() - machine_before
            sender_cpu = sum(cpu_seconds_of(p.pid) for p in processes) - cpu_before
            postgres_cpu = sum(backend_cpu(databases, database).values()) - sum(backends_before.values())
            peaks = [vm_hwm_kib(p.pid) for p in processes]
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
        sent = Ledger(engine).counts(setup.edition_id)["sent"]
        engine.dispose()
        time.sleep(1.0)  # the backends of the workers flush their statistics as they exit
        after = database_stats(databases, database)
        stats = {key: after[key] - stats_before.get(key, 0) for key in after if key != "size_bytes"}
        stats["size_bytes"] = after["size_bytes"]
        return Row(name=f"{workers} worker{'s' if workers > 1 else ''} (Celery, Redis) → smtp-sink", sent=sent,
                   received=sink.received(), seconds=seconds, sender_cpu=sender_cpu, machine_cpu=machine_used,
                   requeued=run.requeued, peaks_kib=peaks, database=databases.url(database),
                   postgres_cpu=postgres_cpu, database_stats=stats)


def database_stats(databases: Databases, name: str) -> dict[str, int]:
    """Transactions and row writes so far in one database (pg_stat_database), and its size in bytes."""
    columns = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched",
               "blks_read", "blks_hit")
    with databases.admin.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        row = connection.exec_driver_sql(
            f"SELECT {', '.join(columns)}, pg_database_size(datname) FROM pg_stat_database WHERE datname = %(name)s",
            {"name": name}).one()
    return {**dict(zip(columns, map(int, row[:-1]), strict=True)), "size_bytes": int(row[-1])}


def backend_cpu(databases: Databases, name: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to one database (same host: /proc)."""
    with databases.admin.connect() as connection:
        pids = list(connection.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = %(name)s", {"name": name}).scalars())
    found: dict[int, float] = {}
    for pid in pids:
        try:
            found[int(pid)] = cpu_seconds_of(int(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def process_run(folder: Path, databases: Databases, setup: Setup, *, processes: int, broker: str,
                args: argparse.Namespace) -> Row:
    from newsletter.config import load_settings
    from newsletter.storage.db import open_database
    from newsletter.usecases.send import run_send

    name = f"processes-{processes}"
    database = databases.create(template=setup.template)
    with PostfixSink(folder) as sink:
        config = write_config(folder, name, database_url=databases.url(database), broker=broker, queue="unused",
                              port=sink.port, args=args)
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        machine_before = machine_cpu()
        started = time.perf_counter()
        report = run_send(settings, engine, frequency="daily", processes=processes)
        seconds = time.perf_counter() - started
        machine_used = machine_cpu() - machine_before
        after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        sender_cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, usage, strict=True))
        engine.dispose()
        return Row(name=f"{processes} process{'es' if processes > 1 else ''} (send, in-process) → smtp-sink",
                   sent=report.counts["sent"], received=sink.received(), seconds=seconds, sender_cpu=sender_cpu,
                   machine_cpu=machine_used)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}, load average {load}"


def server_versions() -> str:
    import redis
    import sqlalchemy as sa

    engine = sa.create_engine(ADMIN_URL, poolclass=sa.NullPool)
    with engine.connect() as connection:
        postgres = str(connection.exec_driver_sql("SHOW server_version").scalar_one()).split()[0]
    engine.dispose()
    info = redis.Redis.from_url(f"{REDIS_URL}/0").info("server")
    return f"PostgreSQL {postgres}, Redis {info['redis_version']}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes per run")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2],
                        help="in-process `send` runs to compare with (none: --processes)")
    parser.add_argument("--batch-size", type=int, default=500, help="[workers] batch_size and claim_batch")
    parser.add_argument("--concurrency", type=int, default=16, help="[delivery] concurrency (per batch)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NEWSLETTER_SECRET", "bench-" + secrets.token_hex(16))
    say(f"machine: {machine()}; {server_versions()}")
    databases = Databases()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="nl-bench-workers-") as tmp, ScratchRedis() as redis_db:
        folder = Path(tmp)
        try:
            setup = set_up(folder, databases, broker=redis_db.url, queue="setup", args=args)
            for count in args.workers:
                rows.append(workers_run(folder, databases, setup, workers=count, broker=redis_db.url, args=args))
                say(f"  {rows[-1].name}: {rows[-1].rate:,.0f} msg/s")
            for count in args.processes:
                rows.append(process_run(folder, databases, setup, processes=count, broker=redis_db.url, args=args))
                say(f"  {rows[-1].name}: {rows[-1].rate:,.0f} msg/s")
        finally:
            databases.drop_all()
    say()
    say(f"{setup.recipients:,} recipients, {setup.variants} variants, batch {args.batch_size} rows, "
        f"{args.concurrency} SMTP connections per batch")
    say("| run | sent | smtp-sink counted | seconds | msg/s | sender CPU µs/msg | machine busy |")
    say("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        busy = row.machine_cpu / (row.seconds * (os.cpu_count() or 1)) if row.seconds else 0.0
        say(f"| {row.name} | {row.sent:,} | {row.received:,} | {row.seconds:.2f} | {row.rate:,.0f} | "
            f"{row.sender_us:,.0f} | {busy:.0%} |")
    bad = [r for r in rows if r.sent != setup.recipients or r.received != r.sent]
    if args.json:
        args.json.write_text(json.dumps({"setup": asdict(setup), "rows": [
            asdict(r) | {"rate": r.rate, "sender_us_per_message": r.sender_us} for r in rows]}, indent=2))
    if bad:
        say(f"MISMATCH: {[r.name for r in bad]} did not send every message exactly once")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
