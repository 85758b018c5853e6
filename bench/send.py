"""Benchmark of delivery: the ledger on SQLite, the SMTP pool, against Postfix's smtp-sink and a slow relay.

Why: issue 4 ("Delivery") sets targets on this 2-core host — at least 2,000 msg/s end to end to a fast
local relay, at least 1,000 msg/s to a relay that answers each message 20 ms late, at least 30 times the
naive pipeline, and peak memory that stays flat from 10,000 to 100,000 recipients. This script measures
all of them in one run and, unless ``--no-check`` is given, exits 1 when one is missed.

How (everything through the library, as a user would run it):

* setup (not in the delivery times) — a temporary folder with a config written from
  ``examples/offline.toml`` (feeds pointed at the bundled snapshots) plus a ``[delivery]`` table;
  ``fetch_sources`` on the bundled feeds; N subscribers inserted in bulk (one ``executemany``, since
  ``SubscriberStore.add`` is one transaction per call); their topics are 50 distinct ordered subsets of
  the 6 topics (all 30 ordered pairs + 20 ordered triples), assigned round-robin, daily, active; the
  addresses spread over 997 domains. Then ``campaign.prepare`` is timed on its own: one render per
  variant (Premailer) + the ledger fill.
* every delivery configuration starts from a copy of the prepared SQLite file (all rows pending), gets
  its own config file (``run_send(processes=2)`` children reload it) and runs in a fresh Python process.
  msg/s = messages sent / wall time of ``newsletter.usecases.send.run_send`` (which calls ``prepare`` again:
  a no-op on a filled ledger, timed separately and included). The sink's own count is checked against
  the ledger. Peak RSS is VmHWM from /proc (see ``vm_hwm_kib`` for why not ``ru_maxrss``): for 1 process
  the sending process itself, for 2 processes the largest sending child (polled every 50 ms). CPU is
  ``getrusage`` of the sender (children included); "other load" is what /proc/stat shows busy beyond
  sender and sink, since this machine is shared.
* sinks — Postfix ``smtp-sink`` (C, discards mail; a fresh one per run, its ``-c`` counter gives the
  count) and, in a separate process, ``tests.mailsink.MailSink(reply_delay=0.02)``: aiosmtpd that
  waits 20 ms before answering the final "." of each message (a remote relay's latency).
* baseline — Postfix ``smtp-source`` sending the same number of copies of one real message (``-F``, the
  median-size variant as built by ``MessageFactory.build``) over 32 reused sessions (``-d``) to smtp-sink:
  the practical upper limit of this machine and sink.
* naive — per recipient: ``render_variant`` (Jinja + Premailer), ``naive_message.build_message_bytes``
  (stdlib ``EmailMessage``) and ``smtplib.SMTP.sendmail`` over one reused connection, on a sample of
  recipients (it is ~100 times slower; a sample keeps the run short).

    python bench/send.py                      # the main table: 20,000 recipients, 50 variants
    python bench/send.py --plain-aiosmtplib   # + 1 process sending with aiosmtplib's own commands (comparison)
    python bench/send.py --scale              # peak RSS of delivery at 10,000 vs 100,000 recipients
    python bench/send.py --profile sink       # cProfile (all threads) of one 1-process run to smtp-sink
    python bench/send.py --profile latency    # ... to the 20 ms sink
    python bench/send.py --verp               # with [inbound] domain: every message its own VERP sender
    python bench/send.py --dkim               # every message DKIM-signed (a fresh 2048-bit key)
    python bench/send.py --sinks sink --baseline /tmp/main-tree --repeat 2   # old and new code, alternating
    python bench/scale.py                     # 10,000 and 100,000 readers: prepare + send + inbound
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import os
import pstats
import re
import resource
import secrets
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
SECRET_ENV = "NEWSLETTER_SECRET"
DOMAINS = 997
"""Recipient domains (prime, so round-robin variants and domains do not line up); the per-domain cap is 8."""
TARGET_SINK = 2000.0
TARGET_LATENCY = 1000.0
TARGET_NAIVE_RATIO = 30.0
TARGET_CPU_US = 250.0
"""Issue 30: sender CPU per message with 1 process to smtp-sink."""
TARGET_SOURCE_RATIO = 0.6
"""Issue 30: 2 processes reach this fraction of smtp-source's rate in the same run."""
TARGET_RSS_GROWTH = 1.25
"""'Flat': the 100k peak may be at most this many times the 10k peak."""
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
FROM_ENVELOPE = "papers@example.org"
EXTRA_CONFIG = ""
"""Appended to every config written: ``--verp`` (and bench/scale.py) add an [inbound] table, so that every
message goes out with its own signed VERP envelope sender, as a list that processes its bounces runs."""
INBOUND_TABLE = '\n[inbound]\ndomain = "bounces.example.org"\n'

_DELAY_SINK_SCRIPT = """
import json, resource, sys
from tests.mailsink import MailSink
sink = MailSink(reply_delay=float(sys.argv[1]))
sink.start()
print(sink.port, flush=True)
sys.stdin.readline()
count = len(sink.messages)
sink.stop()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"received": count, "cpu": usage.ru_utime + usage.ru_stime}), flush=True)
"""


def say(line: str = "") -> None:
    print(line, flush=True)


def mib(kib: int) -> float:
    return kib / 1024


# --- setup ---------------------------------------------------------------------------------------------------


def topic_subsets(slugs: Sequence[str]) -> list[tuple[str, ...]]:
    """50 distinct ordered subsets of 6 topics: the 30 ordered pairs and every 6th of the 120 ordered triples."""
    pairs = list(itertools.permutations(slugs, 2))
    triples = list(itertools.permutations(slugs, 3))[::6]
    return [*pairs, *triples][:50]


def write_config(folder: Path, *, port: int, concurrency: int, claim_batch: int) -> Path:
    """examples/offline.toml with absolute feed paths, ``bench.db`` in ``folder`` and a [delivery] table."""
    from newsletter.demo.run import examples_dir

    examples = examples_dir()
    text = (examples / "offline.toml").read_text(encoding="utf-8")
    if re.search(r"^\[delivery\]", text, re.MULTILINE):
        raise SystemExit("examples/offline.toml now has a [delivery] table; bench/send.py must merge into it")
    text = text.replace('url = "feeds/', f'url = "{examples / "feeds"}/')
    text = text.replace('database_url = "sqlite:///offline.db"', 'database_url = "sqlite:///bench.db"')
    text += (
        f'\n[delivery]\nhost = "127.0.0.1"\nport = {port}\nconcurrency = {concurrency}\n'
        f"claim_batch = {claim_batch}\n"
    ) + EXTRA_CONFIG
    path = folder / "bench.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Prepared:
    folder: Path
    database: Path
    edition_id: int
    day: date
    recipients: int
    variants: int
    rendered: int
    premailer_calls: int
    nothing_new: int
    fetch_s: float
    insert_s: float
    prepare_s: float
    sizes: list[int]
    message_file: Path
    """The median-size real message, LF line ends, for ``smtp-source -F``."""


def set_up(folder: Path, *, recipients: int) -> Prepared:
    """Fetch, subscribe ``recipients`` readers, prepare the edition; leaves a checkpointed ``bench.db``."""
    import sqlalchemy as sa

    from newsletter.config import load_settings
    from newsletter.delivery.sending import message_factory
    from newsletter.rendering import render
    from newsletter.rendering.links import signer_from_settings
    from newsletter.storage.db import open_database
    from newsletter.storage.ledger import Delivery, Ledger
    from newsletter.storage.papers import PaperStore
    from newsletter.usecases.campaign import prepare
    from newsletter.usecases.fetch import fetch_sources
    from subscribers.schema import subscribers

    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, port=25, concurrency=16, claim_batch=500)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)

    started = time.perf_counter()
    reports = asyncio.run(fetch_sources(settings, PaperStore(engine), now=datetime.now(UTC)))
    fetch_s = time.perf_counter() - started
    say(f"  fetched {len(reports)} sources, {sum(r.new for r in reports)} new papers in {fetch_s:.2f} s")

    subsets = topic_subsets([t.slug for t in settings.topics])
    now = datetime.now(UTC)
    started = time.perf_counter()
    rows = []
    for n in range(recipients):
        name = f"Zoë Ångström {n}" if n % 7 == 0 else f"Reader {n}"
        rows.append({"email": f"reader{n}@mail{n % DOMAINS}.example", "name": name, "status": "active",
                     "topics": list(subsets[n % len(subsets)]), "frequency": "daily", "source": "import",
                     "created": now, "updated": now})
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(subscribers.insert(), rows[start : start + 10_000])
    insert_s = time.perf_counter() - started
    say(f"  {recipients:,} subscribers inserted in {insert_s:.2f} s ({len(subsets)} topic subsets)")

    inline_before = render.stats.inline_calls
    started = time.perf_counter()
    prepared = prepare(settings, engine, frequency="daily", now=datetime.now(UTC), day=None,
                       signer=signer_from_settings(settings))
    prepare_s = time.perf_counter() - started
    premailer_calls = render.stats.inline_calls - inline_before
    say(f"  prepare: {prepared.recipients:,} ledger rows, {prepared.variants} variants "
        f"({prepared.rendered} rendered, {premailer_calls} Premailer calls) in {prepare_s:.2f} s")
    if prepared.edition.is_empty or prepared.recipients != recipients:
        raise SystemExit(f"expected {recipients} recipients, the edition has {prepared.recipients} "
                         f"({prepared.nothing_new} with nothing new)")

    # One real message per variant, exactly as the sender builds it.
    factory = message_factory(settings, engine, prepared.edition, clock=lambda: datetime.now(UTC))
    first: dict[str, Delivery] = {}
    for row in Ledger(engine).rows(prepared.edition.id, state="pending"):
        if row["variant_key"] not in first:
            first[row["variant_key"]] = Delivery(
                id=row["id"], edition_id=row["edition_id"], subscriber_id=row["subscriber_id"], email=row["email"],
                name=row["name"], variant_key=row["variant_key"], message_id=row["message_id"],
                attempts=row["attempts"], created=row["created"])
    messages = sorted((factory.build(d) for d in first.values()), key=len)
    median = messages[len(messages) // 2]
    message_file = folder / "message.eml"
    message_file.write_bytes(median.replace(b"\r\n", b"\n"))

    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute(sa.text("SELECT 1"))
    engine.dispose()
    return Prepared(
        folder=folder, database=folder / "bench.db", edition_id=prepared.edition.id, day=prepared.edition.date,
        recipients=prepared.recipients, variants=prepared.variants, rendered=prepared.rendered,
        premailer_calls=premailer_calls, nothing_new=prepared.nothing_new, fetch_s=fetch_s, insert_s=insert_s,
        prepare_s=prepare_s, sizes=[len(m) for m in messages], message_file=message_file,
    )


def run_folder(prepared: Prepared, name: str, *, port: int, concurrency: int, claim_batch: int) -> Path:
    """A fresh copy of the prepared database (every row pending) with its own config file."""
    folder = prepared.folder / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    shutil.copy(prepared.database, folder / "bench.db")
    return write_config(folder, port=port, concurrency=concurrency, claim_batch=claim_batch)


# --- sinks ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def machine_busy() -> float:
    """CPU-seconds all cores have been busy since boot (/proc/stat), to tell other load apart from ours."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a live process from /proc (this host is Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PostfixSink:
    """Postfix's smtp-sink on 127.0.0.1 (discards every message); ``received`` reads its ``-c`` counter."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / f"smtp-sink-{self.port}.out"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([SMTP_SINK, *user, "-c", f"127.0.0.1:{self.port}", "256"],
                                            stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def received(self) -> int:
        """Messages completed ('.' answered); waits until the counter stops moving."""
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 0.3:
            found = re.findall(rb"mesg=(\d+)", self.log.read_bytes())
            count = int(found[-1]) if found else 0
            if count != last:
                last, stable_since = count, time.monotonic()
            time.sleep(0.05)
        return last

    def cpu(self) -> float:
        return cpu_seconds_of(self.process.pid) if self.process is not None else 0.0

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


class DelaySink:
    """``MailSink(reply_delay=...)`` (aiosmtpd) in its own process, so it never shares the sender's GIL."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Self:
        self.process = subprocess.Popen([sys.executable, "-c", _DELAY_SINK_SCRIPT, str(self.delay)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        return self

    def finish(self) -> dict[str, Any]:
        """Stop the sink; returns ``{"received": n, "cpu": seconds}``."""
        if self.process is not None and not self.result:
            assert self.process.stdin is not None
            assert self.process.stdout is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            self.result = json.loads(self.process.stdout.readline())
            self.process.wait(timeout=30)
        return self.result

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- workers (each a fresh process: `python bench/send.py --worker JSON`) ------------------------------------


def vm_hwm_kib(pid: int | str = "self") -> int:
    """Peak RSS of one process's own address space (/proc/PID/status VmHWM); 0 once it is gone.

    Not ``ru_maxrss``: on Linux that also counts the parent's RSS at fork time, carried across exec (a
    fresh ``python -c`` child of a 500 MiB parent reports ru_maxrss 513 MiB, VmHWM 13 MiB), so a worker
    started by this script after a 100,000-recipient setup, or a sending child spawned by ``run_send``
    after its ``prepare``, would report its parent's peak rather than its own.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class ChildPeaks:
    """Polls the VmHWM of this process's `newsletter.delivery.child` children (the sending processes) every 50 ms."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-peaks", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # The children of this process's threads, not a scan of /proc: reading every process's stat and cmdline
        # 20 times a second cost this process more CPU than its own sending children's polls (and ran beside
        # the sender on the same cores).
        while not self._stop.wait(self.interval):
            for pid in self._children():
                try:
                    if b"newsletter.delivery.child" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                except (FileNotFoundError, ProcessLookupError):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), vm_hwm_kib(pid))

    @staticmethod
    def _children() -> list[int]:
        pids: list[int] = []
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                pids += [int(pid) for pid in (task / "children").read_text().split()]
        return pids


def _usage() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rss_self_kib": vm_hwm_kib(), "ru_maxrss_self_kib": me.ru_maxrss,
            "ru_maxrss_children_kib": children.ru_maxrss,
            "cpu_self": me.ru_utime + me.ru_stime, "cpu_children": children.ru_utime + children.ru_stime,
            "sys_self": me.ru_stime, "sys_children": children.ru_stime}


def patch_plain_aiosmtplib() -> None:
    """COMPARISON only (``--plain-aiosmtplib``), never the library: each message through aiosmtplib's commands.

    What the sender did before ``newsletter.delivery.smtp_session``: ``mail()``, ``rcpt()``, the ledger mark, then
    ``data()``, one command and one reply at a time, with aiosmtplib's address parsing and its two regex
    passes over the content. Same pool, ledger and messages; only the transaction differs.
    """
    import aiosmtplib

    from newsletter.delivery import transports as delivery

    async def send(self: Any, claimed: Any, mark_data: Any) -> tuple[str, int | None, str]:
        self.phase = "connect"
        smtp = getattr(self, "plain", None)
        if smtp is None or not smtp.is_connected:
            smtp = self.plain = await delivery.connect(self.settings, password=self.password)
        self.phase = "mail"
        await smtp.mail(self.sender)
        self.phase = "rcpt"
        await smtp.rcpt(claimed.delivery.email)
        await mark_data()
        self.phase = "data"
        response = await smtp.data(claimed.message)
        return "data", response.code, response.message

    async def close(self: Any) -> None:
        smtp = getattr(self, "plain", None)
        if smtp is not None and smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()

    delivery.SmtpTransport.send = send  # type: ignore[method-assign]
    delivery.SmtpTransport.close = close  # type: ignore[method-assign]


def worker_send(spec: dict[str, Any]) -> dict[str, Any]:
    """``run_send`` (the `newsletter send` path) or, with mode "deliver", only ``deliver_edition``."""
    if spec.get("plain_aiosmtplib"):
        patch_plain_aiosmtplib()
    from newsletter.config import load_settings
    from newsletter.delivery.sending import deliver_edition
    from newsletter.rendering.links import signer_from_settings
    from newsletter.storage.db import open_database
    from newsletter.storage.editions import EditionStore
    from newsletter.storage.ledger import Ledger
    from newsletter.usecases.campaign import prepare
    from newsletter.usecases.send import run_send

    settings = load_settings(Path(spec["config"]))
    engine = open_database(settings.newsletter.database_url)
    day = date.fromisoformat(spec["day"])
    before = _usage()
    busy = machine_busy()
    started = time.perf_counter()
    child_peaks: list[int] = []
    if spec["mode"] == "deliver":
        edition = EditionStore(engine).get_by_id(spec["edition_id"])
        assert edition is not None
        stats = asyncio.run(deliver_edition(settings, engine, edition))
        wall = time.perf_counter() - started
        counts = Ledger(engine).counts(edition.id)
        sent = stats.sent
    else:
        # Children's peaks only when there are children: the polling thread is the benchmark's, not the sender's.
        with ChildPeaks() if spec["processes"] > 1 else contextlib.nullcontext() as children:
            report = run_send(settings, engine, frequency="daily", day=day, processes=spec["processes"])
            wall = time.perf_counter() - started
        child_peaks = sorted(children.peaks.values()) if children is not None else []
        counts, sent = report.counts, report.stats.sent
    busy = machine_busy() - busy
    after = _usage()
    prepare_noop = 0.0
    if spec["mode"] != "deliver":
        # The no-op prepare that run_send did first (ledger full), timed again afterwards.
        started = time.perf_counter()
        prepare(settings, engine, frequency="daily", now=datetime.now(UTC), day=day,
                signer=signer_from_settings(settings))
        prepare_noop = time.perf_counter() - started
    child_start = 0.0
    if spec["mode"] != "deliver" and spec["processes"] > 1:
        # What starting one sending child costs before it sends anything: the interpreter and its imports.
        started_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(2):
            subprocess.run([sys.executable, "-c", "import newsletter.delivery.child"], check=True)
        ended_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_start = (ended_cpu.ru_utime + ended_cpu.ru_stime - started_cpu.ru_utime - started_cpu.ru_stime) / 2
    return {"wall": wall, "sent": sent, "counts": counts, "prepare_noop": prepare_noop, "machine_busy": busy,
            "rss_before_kib": before["rss_self_kib"],
            "cpu_parent": after["cpu_self"] - before["cpu_self"],
            "cpu_children": after["cpu_children"] - before["cpu_children"], "child_start_cpu": child_start,
            "cpu": after["cpu_self"] - before["cpu_self"] + after["cpu_children"] - before["cpu_children"],
            "cpu_sys": after["sys_self"] - before["sys_self"] + after["sys_children"] - before["sys_children"],
            "rss_self_kib": after["rss_self_kib"], "rss_children_kib": max(child_peaks, default=0),
            "child_peaks_kib": child_peaks, "ru_maxrss_self_kib": after["ru_maxrss_self_kib"],
            "ru_maxrss_children_kib": after["ru_maxrss_children_kib"]}


def worker_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """Per recipient: select, render_variant (Jinja + Premailer), EmailMessage, smtplib — one reused connection."""
    from naive_message import build_message_bytes  # bench/naive_message.py, beside this script

    from newsletter.config import load_settings
    from newsletter.editions.selection import select
    from newsletter.rendering.links import recipient_links, signer_from_settings
    from newsletter.rendering.render import RenderEnvironment, render_variant
    from newsletter.storage.db import open_database
    from newsletter.storage.editions import EditionStore
    from newsletter.usecases.campaign import message_id, sender_domain
    from subscribers.store import SubscriberStore

    settings = load_settings(Path(spec["config"]))
    engine = open_database(settings.newsletter.database_url)
    edition = EditionStore(engine).get_by_id(spec["edition_id"])
    assert edition is not None
    readers = SubscriberStore(engine).list_active(frequency="daily")[: spec["sample"]]
    environment = RenderEnvironment(settings)
    signer = signer_from_settings(settings)
    secret = signer.keyring.secret()
    domain = sender_domain(settings)
    render_s = build_s = smtp_s = 0.0
    sizes = 0
    cpu = time.process_time()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", spec["port"]) as smtp:
        for reader in readers:
            t0 = time.perf_counter()
            selection = select(edition, reader.topics, max_per_topic=settings.email.max_papers_per_topic)
            variant = render_variant(selection, settings=settings, environment=environment)
            t1 = time.perf_counter()
            recipient = recipient_links(settings, signer, subscriber_id=reader.id, email=reader.email,
                                        name=reader.name, edition_slug=edition.slug)
            raw = build_message_bytes(variant, recipient, settings=settings,
                                      message_id=message_id(secret, edition_id=edition.id,
                                                            subscriber_id=reader.id, domain=domain))
            t2 = time.perf_counter()
            smtp.sendmail(settings.newsletter.from_address, [reader.email], raw)
            t3 = time.perf_counter()
            render_s, build_s, smtp_s = render_s + t1 - t0, build_s + t2 - t1, smtp_s + t3 - t2
            sizes += len(raw)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "sent": len(readers), "render_s": render_s, "build_s": build_s, "smtp_s": smtp_s,
            "mean_size": sizes / max(1, len(readers))}


@dataclass
class _ThreadProfiles:
    """cProfile in every thread: the sender's ledger writes run in ``asyncio.to_thread`` workers."""

    profilers: list[cProfile.Profile] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bootstrap(self, frame: FrameType, event: str, arg: object) -> None:
        profiler = cProfile.Profile()
        with self.lock:
            self.profilers.append(profiler)
        profiler.enable()  # replaces this bootstrap hook in the new thread


def _micro(function: Callable[[], object], repeat: int) -> float:
    """Mean µs of CPU per call of ``function`` (no profiler; CPU time, since the machine is shared)."""
    started = time.process_time()
    for _ in range(repeat):
        function()
    return 1e6 * (time.process_time() - started) / repeat


def per_message_costs(settings: Any, engine: Any, edition: Any, *, sample: int = 500) -> dict[str, float]:
    """What each message costs in the steps the profile points at, timed without the profiler."""
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from newsletter.delivery.message import sendable_message
    from newsletter.delivery.sending import message_factory
    from newsletter.rendering.links import recipient_links, signer_from_settings
    from newsletter.rendering.render import personal_values
    from newsletter.storage.ledger import Delivery, Ledger

    factory = message_factory(settings, engine, edition, clock=lambda: datetime.now(UTC))
    signer = signer_from_settings(settings)
    rows = Ledger(engine).rows(edition.id, state="sent")[:sample]
    deliveries = [Delivery(id=r["id"], edition_id=r["edition_id"], subscriber_id=r["subscriber_id"],
                           email=r["email"], name=r["name"], variant_key=r["variant_key"],
                           message_id=r["message_id"], attempts=r["attempts"], created=r["created"])
                  for r in rows]
    messages = [factory.build(d) for d in deliveries]  # also fills the template cache
    n = len(deliveries)
    links = iter(deliveries * 3)
    builds = iter(deliveries * 3)
    normal = iter(messages * 3)
    periods = iter(messages * 3)
    recipients = [recipient_links(settings, signer, subscriber_id=d.subscriber_id, email=d.email, name=d.name,
                                  edition_slug=edition.slug) for d in deliveries]
    pairs = [(factory.template(d.variant_key), r, d) for d, r in zip(deliveries, recipients, strict=True)]
    personal = iter(recipients * 3)
    spliced = iter(pairs * 3)
    now = datetime.now(UTC)
    return {
        "message_bytes": sum(map(len, messages)) / n,
        "recipient_links_us": _micro(lambda: (d := next(links), recipient_links(
            settings, signer, subscriber_id=d.subscriber_id, email=d.email, name=d.name,
            edition_slug=edition.slug)), n),
        "personal_values_us": _micro(lambda: personal_values(next(personal)), n),
        "sendable_message (values, headers, splice)_us": _micro(lambda: (p := next(spliced), sendable_message(
            p[0], p[1], settings=settings, message_id=p[2].message_id, date=now)), n),
        "MessageFactory.build_us": _micro(lambda: factory.build(next(builds)), n),
        "plain aiosmtplib only: normalize_message_line_endings_us": _micro(
            lambda: normalize_message_line_endings(next(normal)), n),
        "plain aiosmtplib only: PERIOD_REGEX.sub (dot-stuffing)_us": _micro(
            lambda: PERIOD_REGEX.sub(b"..", next(periods)), n),
    }


def worker_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """One 1-process ``deliver_edition`` under cProfile (event-loop thread and ledger threads apart)."""
    from newsletter.config import load_settings
    from newsletter.delivery.sending import deliver_edition
    from newsletter.storage.db import open_database
    from newsletter.storage.editions import EditionStore

    settings = load_settings(Path(spec["config"]))
    engine = open_database(settings.newsletter.database_url)
    edition = EditionStore(engine).get_by_id(spec["edition_id"])
    assert edition is not None
    threads = _ThreadProfiles()
    threading.setprofile(threads.bootstrap)
    main = cProfile.Profile()
    started = time.perf_counter()
    main.enable()
    try:
        stats = asyncio.run(deliver_edition(settings, engine, edition))
    finally:
        main.disable()
        threading.setprofile(None)
    wall = time.perf_counter() - started
    main.dump_stats(spec["out"] + ".main")
    if threads.profilers:
        combined = pstats.Stats(threads.profilers[0])
        for profiler in threads.profilers[1:]:
            combined.add(profiler)
        combined.dump_stats(spec["out"] + ".threads")
    costs = per_message_costs(settings, engine, edition)
    return {"wall": wall, "sent": stats.sent, "threads": len(threads.profilers), "costs": costs}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "send": worker_send, "naive": worker_naive, "profile": worker_profile,
}


def start_worker(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """One worker in a fresh interpreter; its last stdout line is its JSON result. With ``spec["tree"]`` the
    library is imported from that checkout (``--baseline``): this script's worker, another tree's code."""
    tree = spec.get("tree")
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree or ROOT, env=env)


def finish_worker(process: subprocess.Popen[str], kind: str) -> dict[str, Any]:
    stdout, stderr = process.communicate()
    if process.returncode != 0 or not stdout.strip():
        sys.stderr.write(stdout + stderr)
        raise SystemExit(f"worker {kind} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    return finish_worker(start_worker(spec), spec["kind"])


# --- the runs ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    connections: str
    sent: int
    received: int
    wall: float
    cpu: float
    rss_mib: float | None
    before_mib: float | None = None
    """Peak RSS of the sending process before the timed step (imports, open database); 1 process only."""
    others: float | None = None
    """Cores kept busy by processes other than the sender and the sink during the run (a shared machine)."""
    note: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.wall if self.wall else 0.0


def library_run(prepared: Prepared, name: str, *, folder: str, processes: int, concurrency: int,
                claim_batch: int, latency: float | None, mode: str = "run_send",
                plain_aiosmtplib: bool = False, tree: Path | None = None) -> tuple[Row, dict[str, Any]]:
    """One configuration in a fresh process; ``tree``: with the library of that checkout (``--baseline``)."""
    sink: PostfixSink | DelaySink = DelaySink(latency) if latency is not None else PostfixSink(prepared.folder)
    load = os.getloadavg()[0]
    with sink:
        config = run_folder(prepared, folder, port=sink.port, concurrency=concurrency, claim_batch=claim_batch)
        spec = {"kind": "send", "config": str(config), "day": prepared.day.isoformat(), "processes": processes,
                "mode": mode, "edition_id": prepared.edition_id,
                "plain_aiosmtplib": plain_aiosmtplib, "tree": str(tree) if tree else None}
        result = run_worker(spec)
        if isinstance(sink, PostfixSink):
            received, sink_cpu = sink.received(), sink.cpu()
        else:
            finished = sink.finish()
            received, sink_cpu = int(finished["received"]), float(finished["cpu"])
    peak = result["rss_children_kib"] if processes > 1 and mode == "run_send" else result["rss_self_kib"]
    counts = result["counts"]
    kernel = 1e6 * result["cpu_sys"] / max(1, result["sent"])
    note = (f"sink CPU {sink_cpu:.1f} s ({1e6 * sink_cpu / max(1, received):,.0f} µs/msg); sender CPU in the "
            f"kernel {kernel:,.0f} µs/msg; load before {load:.2f}")
    if mode == "run_send":
        note += f"; incl. no-op prepare {result['prepare_noop']:.2f} s"
    if processes > 1:
        note += (f"; children peaks {', '.join(f'{mib(k):.0f}' for k in result['child_peaks_kib'])} MiB, "
                 f"parent peak {mib(result['rss_self_kib']):.0f} MiB")
        if "cpu_parent" in result:
            sent = max(1, result["sent"])
            note += (f"; CPU µs/msg: parent {1e6 * result['cpu_parent'] / sent:,.0f}, sending children "
                     f"{1e6 * result['cpu_children'] / sent:,.0f} (of which starting them "
                     f"{1e6 * processes * result['child_start_cpu'] / sent:,.0f}: "
                     f"{result['child_start_cpu']:.2f} s of CPU each)")
    if counts.get("sent") != prepared.recipients:
        note += f"; LEDGER {counts}"
    result["sink_cpu"] = sink_cpu
    # With nothing else running: all cores for sender(s) + sink, and at most one core per sending process.
    per_message = (result["cpu"] + sink_cpu) / max(1, result["sent"])
    cores = os.cpu_count() or 1
    ceiling = min(cores / per_message, processes * result["sent"] / result["cpu"]) if result["cpu"] else 0.0
    note += f"; CPU ceiling on {cores} idle cores ≈ {ceiling:,.0f} msg/s"
    result["ceiling"] = ceiling
    others = max(0.0, result["machine_busy"] - result["cpu"] - sink_cpu) / result["wall"]
    row = Row(name=name, connections=f"{processes} × {concurrency}", sent=int(result["sent"]), received=received,
              wall=float(result["wall"]), cpu=float(result["cpu"]), rss_mib=mib(int(peak)), others=others,
              note=note, before_mib=mib(int(result["rss_before_kib"])) if processes == 1 else None)
    return row, result


def source_run(prepared: Prepared, *, sessions: int) -> Row:
    with PostfixSink(prepared.folder) as sink:
        command = [SMTP_SOURCE, "-s", str(sessions), "-d", "-m", str(prepared.recipients), "-F",
                   str(prepared.message_file), "-f", FROM_ENVELOPE, "-t", "reader@mail0.example",
                   f"127.0.0.1:{sink.port}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = machine_busy()
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - started
        busy = machine_busy() - busy
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        received, sink_cpu = sink.received(), sink.cpu()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Row(name="smtp-source → smtp-sink (baseline)", connections=f"{sessions} sessions", sent=received,
               received=received, wall=wall, cpu=cpu, rss_mib=None, others=max(0.0, busy - cpu - sink_cpu) / wall,
               note=f"sink CPU {sink_cpu:.1f} s ({1e6 * sink_cpu / max(1, received):,.0f} µs/msg); -d -F")


def naive_run(prepared: Prepared, *, sample: int) -> tuple[Row, dict[str, Any]]:
    with PostfixSink(prepared.folder) as sink:
        config = run_folder(prepared, "naive", port=sink.port, concurrency=1, claim_batch=500)
        result = run_worker({"kind": "naive", "config": str(config), "edition_id": prepared.edition_id,
                             "port": sink.port, "sample": sample})
        received = sink.received()
    n = result["sent"]
    note = (f"SAMPLE of {n}; per message: render {1000 * result['render_s'] / n:.1f} ms, EmailMessage "
            f"{1000 * result['build_s'] / n:.1f} ms, smtplib {1000 * result['smtp_s'] / n:.2f} ms")
    return Row(name="naive (Premailer + EmailMessage + smtplib)", connections="1", sent=n, received=received,
               wall=result["wall"], cpu=result["cpu"], rss_mib=None, note=note), result


def print_table(rows: Sequence[Row]) -> None:
    header = ("configuration", "conns", "sent", "sink got", "wall s", "msg/s", "CPU µs/msg", "peak RSS MiB",
              "other load")
    widths = (44, 14, 8, 8, 8, 8, 10, 12, 10)
    say("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    say("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        cells = (r.name, r.connections, f"{r.sent:,}", f"{r.received:,}", f"{r.wall:.2f}", f"{r.rate:,.0f}",
                 f"{1e6 * r.cpu / r.sent:,.0f}" if r.cpu and r.sent else "–",
                 f"{r.rss_mib:.0f}" if r.rss_mib is not None else "–",
                 f"{r.others:.2f} cores" if r.others is not None else "–")
        say("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                              for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |")
    say("CPU µs/msg: the sending side only (smtp-source, the sending process(es), or the naive loop); the sink's "
        "CPU is in the notes. other load: cores kept busy by other processes on this shared machine during the "
        "run. CPU ceiling: cores / (sender + sink CPU per message), at most one core per sending process.")
    for r in rows:
        if r.note:
            say(f"  {r.name}: {r.note}")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import sqlalchemy

    load = os.getloadavg()
    return (f"nproc={os.cpu_count()}, {model}, Python {sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}, "
            f"aiosmtplib {_version('aiosmtplib')}, aiosmtpd {_version('aiosmtpd')}, load average "
            f"{load[0]:.2f}")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)



@dataclass
class Check:
    target: str
    measured: str
    met: bool


def print_checks(checks: Sequence[Check]) -> None:
    say()
    for c in checks:
        say(f"  {'MET   ' if c.met else 'MISSED'}  {c.target}: {c.measured}")


def main_run(args: argparse.Namespace, folder: Path) -> tuple[list[Check], dict[str, Any]]:
    say(f"setup: {args.recipients:,} recipients in {folder}")
    prepared = set_up(folder / "prepared", recipients=args.recipients)
    sizes = prepared.sizes
    say(f"  message sizes over the {len(sizes)} variants: min {min(sizes):,} B, median "
        f"{sizes[len(sizes) // 2]:,} B, max {max(sizes):,} B (median one used for smtp-source -F)")
    rows: list[Row] = []
    results: dict[str, Any] = {"prepared": {k: v for k, v in asdict(prepared).items()
                                            if k not in ("folder", "database", "message_file", "day")}}
    say("baseline: smtp-source")
    rows.append(source_run(prepared, sessions=args.source_sessions))
    by_name: dict[str, Row] = {}
    plans = []
    if "sink" in args.sinks:
        plans += [(f"library, {p} process{'es' if p > 1 else ''} → smtp-sink", p, args.concurrency, None)
                  for p in args.processes]
    if "latency" in args.sinks:
        plans += [(f"library, {p} process{'es' if p > 1 else ''} → aiosmtpd, {1000 * args.latency:.0f} ms", p,
                   args.latency_concurrency, args.latency) for p in args.processes]
    # With --baseline, each configuration runs with the other checkout's code, then with this one, --repeat times
    # (alternating, so both see the same machine); the targets are checked on this tree's best run.
    trees: list[tuple[str, Path | None]] = [
        (f"baseline {tree.resolve().name}: " if len(args.baseline) > 1 else "baseline: ", tree.resolve())
        for tree in args.baseline]
    trees.append(("", None))
    number = 0
    for name, processes, concurrency, latency in plans:
        for repeat in range(args.repeat):
            for prefix, tree in trees:
                label = prefix + name + (f" #{repeat + 1}" if args.repeat > 1 else "")
                say(f"run: {label}")
                row, result = library_run(prepared, label, folder=f"run-{number}", processes=processes,
                                          concurrency=concurrency, claim_batch=args.claim_batch, latency=latency,
                                          tree=tree)
                number += 1
                rows.append(row)
                results[label] = result
                if tree is None and (name not in by_name or row.rate > by_name[name].rate):
                    by_name[name] = row
    if args.plain_aiosmtplib:
        name = "plain aiosmtplib, 1 process → smtp-sink"
        say(f"run: {name}")
        row, result = library_run(prepared, name, folder="run-plain", processes=1, concurrency=args.concurrency,
                                  claim_batch=args.claim_batch, latency=None, plain_aiosmtplib=True)
        rows.append(row)
        results["plain-aiosmtplib"] = result
    say(f"naive: sample of {args.naive_sample}")
    naive, naive_result = naive_run(prepared, sample=args.naive_sample)
    rows.append(naive)
    results["naive"] = naive_result

    say()
    say(f"{prepared.recipients:,} recipients, {prepared.variants} variants; prepare (render + ledger fill) "
        f"{prepared.prepare_s:.2f} s with {prepared.rendered} variants rendered "
        f"({prepared.premailer_calls} Premailer calls)")
    say()
    print_table(rows)

    sink_rows = [r for n, r in by_name.items() if "smtp-sink" in n]
    latency_rows = [r for n, r in by_name.items() if "aiosmtpd" in n]
    best_sink = max(sink_rows, key=lambda r: r.rate) if sink_rows else None
    best_latency = max(latency_rows, key=lambda r: r.rate) if latency_rows else None
    source = rows[0]
    if best_sink is not None:
        say(f"smtp-source {source.rate:,.0f} msg/s; " + ", ".join(
            f"{r.name}: {r.rate / source.rate:.2f}× smtp-source, {1e6 * r.cpu / max(1, r.sent):,.0f} µs/msg"
            for r in rows[1:] if "smtp-sink" in r.name))
    say()
    say(f"naive: {1000 / naive.rate:.2f} ms per message = {naive.rate:.1f} msg/s (a sample of {naive.sent}); "
        + ", ".join(f"{r.name}: {r.rate / naive.rate:.0f}×" for r in sink_rows))
    naive_cpu = naive.cpu / naive.sent
    say(f"naive CPU per message {1e6 * naive_cpu:,.0f} µs; CPU ratio (load-independent): "
        + ", ".join(f"{r.name}: {naive_cpu / (r.cpu / r.sent):.0f}×" for r in sink_rows))
    library_rows = [r for r in rows[1:] if r.name.startswith(("library", "baseline"))]
    all_ok = all(r.sent == prepared.recipients == r.received for r in library_rows)
    checks = [Check("every recipient sent once (ledger sent == sink count == recipients)",
                    "yes" if all_ok else "NO: see the sent / sink got columns", all_ok)]
    if best_sink is not None:
        checks += [
            Check(f"≥ {TARGET_SINK:,.0f} msg/s end to end to smtp-sink",
                  f"{best_sink.rate:,.0f} msg/s ({best_sink.name})", best_sink.rate >= TARGET_SINK),
            Check(f"≥ {TARGET_NAIVE_RATIO:.0f}× naive", f"{best_sink.rate / naive.rate:.0f}× ({best_sink.name})",
                  best_sink.rate / naive.rate >= TARGET_NAIVE_RATIO),
        ]
    one = [r for n, r in by_name.items() if n == "library, 1 process → smtp-sink"]
    two = [r for n, r in by_name.items() if n == "library, 2 processes → smtp-sink"]
    if one:
        cpu = 1e6 * one[0].cpu / max(1, one[0].sent)
        checks.append(Check(f"≤ {TARGET_CPU_US:.0f} µs of CPU a message, 1 process → smtp-sink",
                            f"{cpu:,.0f} µs/msg", cpu <= TARGET_CPU_US))
    if two:
        ratio = two[0].rate / source.rate if source.rate else 0.0
        checks.append(Check(f"2 processes ≥ {TARGET_SOURCE_RATIO}× smtp-source in the same run",
                            f"{two[0].rate:,.0f} / {source.rate:,.0f} msg/s = {ratio:.2f}×",
                            ratio >= TARGET_SOURCE_RATIO))
    if best_latency is not None:
        checks.append(Check(f"≥ {TARGET_LATENCY:,.0f} msg/s with {1000 * args.latency:.0f} ms latency",
                            f"{best_latency.rate:,.0f} msg/s ({best_latency.name})",
                            best_latency.rate >= TARGET_LATENCY))
    print_checks(checks)
    results["rows"] = [asdict(r) | {"rate": r.rate} for r in rows]
    return checks, results


def scale_run(args: argparse.Namespace, folder: Path) -> tuple[list[Check], dict[str, Any]]:
    table: dict[int, dict[str, Row]] = {}
    for size in args.scale_sizes:
        say(f"setup: {size:,} recipients")
        prepared = set_up(folder / f"scale-{size}", recipients=size)
        table[size] = {}
        for label, processes, mode in (("delivery step, 1 process", 1, "deliver"),
                                       ("run_send, 1 process (whole process)", 1, "run_send"),
                                       ("run_send, 2 processes (largest child)", 2, "run_send")):
            say(f"run: {label}")
            row, _ = library_run(prepared, label, folder=f"run-{mode}-{processes}", processes=processes,
                                 concurrency=args.concurrency, claim_batch=args.claim_batch, latency=None, mode=mode)
            table[size][label] = row
    small, large = min(args.scale_sizes), max(args.scale_sizes)
    say()
    say(f"| peak RSS MiB (before sending; msg/s)   | {small:>22,} | {large:>22,} | ratio |")
    say("|----------------------------------------|------------------------|------------------------|-------|")
    checks: list[Check] = []
    for label in table[small]:
        a, b = table[small][label], table[large][label]
        assert a.rss_mib is not None
        assert b.rss_mib is not None
        ratio = b.rss_mib / a.rss_mib
        cells = [f"{r.rss_mib:.0f} ({'–' if r.before_mib is None else f'{r.before_mib:.0f}'}; {r.rate:,.0f}/s)"
                 for r in (a, b)]
        say(f"| {label:<38} | {cells[0]:>22} | {cells[1]:>22} | {ratio:>5.2f} |")
        if label != "run_send, 1 process (whole process)":
            checks.append(Check(f"peak RSS flat from {small:,} to {large:,} ({label})",
                                f"{a.rss_mib:.0f} → {b.rss_mib:.0f} MiB (×{ratio:.2f})", ratio <= TARGET_RSS_GROWTH))
        for size, row in ((small, a), (large, b)):
            if row.sent != size or row.received != size:
                checks.append(Check(f"{label} at {size:,}: every recipient sent once",
                                    f"sent {row.sent}, sink {row.received}", False))
    print_checks(checks)
    results = {str(size): {label: asdict(row) | {"rate": row.rate} for label, row in rows.items()}
               for size, rows in table.items()}
    return checks, results


def _where(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


IDLE = ("<method 'get' of '_queue.SimpleQueue' objects>", "_worker")
"""Thread-pool workers waiting for work: idle time, not cost."""


def print_profile(path: Path, *, top: int, title: str, skip_idle: bool = False) -> None:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    entries = {k: v for k, v in raw.items() if not (skip_idle and k[2] in IDLE)}
    busy = sum(tt for _, _, tt, _, _ in entries.values())
    say(f"{title}: {busy:.2f} s of own time in all functions"
        + (" (idle thread-pool waits left out)" if skip_idle else ""))
    for label, index in (("tottime (own time)", 2), ("cumtime (with callees)", 3)):
        say(f"  top {top} by {label}")
        say(f"  {'tottime':>8} {'cumtime':>8} {'calls':>9}  function")
        ranked = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)[:top]
        for (filename, line, function), (_, calls, tottime, cumtime, _) in ranked:
            say(f"  {tottime:8.2f} {cumtime:8.2f} {calls:9,}  {_where(filename)}:{line}({function})")
        say()


def profile_run(args: argparse.Namespace, folder: Path) -> tuple[list[Check], dict[str, Any]]:
    say(f"setup: {args.recipients:,} recipients")
    prepared = set_up(folder / "prepared", recipients=args.recipients)
    latency = args.latency if args.profile == "latency" else None
    sink: PostfixSink | DelaySink = DelaySink(latency) if latency is not None else PostfixSink(prepared.folder)
    concurrency = args.latency_concurrency if latency is not None else args.concurrency
    n = args.profile_processes
    outs = [folder / f"send-{args.profile}-{k}.prof" for k in range(n)]
    with sink:
        config = run_folder(prepared, "profile", port=sink.port, concurrency=concurrency,
                            claim_batch=args.claim_batch)
        started = time.perf_counter()
        workers = [start_worker({"kind": "profile", "config": str(config), "edition_id": prepared.edition_id,
                                 "out": str(out)}) for out in outs]
        results = [finish_worker(w, "profile") for w in workers]
        wall = time.perf_counter() - started
        if isinstance(sink, DelaySink):
            sink.finish()
    sent = sum(r["sent"] for r in results)
    say(f"profiled: {n} process(es) × {concurrency} connections, each deliver_edition under cProfile; {sent:,} sent "
        f"in {wall:.2f} s including interpreter start ({sent / wall:,.0f} msg/s under cProfile)")
    for k, r in enumerate(results):
        say(f"  process {k}: {r['sent']:,} sent in {r['wall']:.2f} s; {r['threads']} to_thread workers profiled")
    say("(cProfile counts every resumption of a coroutine as a call; times are wall-clock and inflated ~2×)")
    say()
    print_profile(Path(str(outs[0]) + ".main"), top=args.top, title="process 0, event-loop thread")
    threads = Path(str(outs[0]) + ".threads")
    if threads.is_file():
        print_profile(threads, top=args.top, title="process 0, asyncio.to_thread workers (ledger SQL)",
                      skip_idle=True)
    say("per message, without the profiler (mean over 500 sent rows, process 0):")
    for name, value in results[0]["costs"].items():
        say(f"  {name.removesuffix('_us'):<48} {value:10,.1f} {'µs' if name.endswith('_us') else 'B'}")
    return [], {"profiles": [str(o) for o in outs], "results": results}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=20_000, help="subscribers (default 20,000)")
    parser.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                        help="sending process counts to run, comma-separated (default 1,2)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="SMTP connections per process to smtp-sink (default 16)")
    parser.add_argument("--latency", type=float, default=0.02, help="reply delay of the aiosmtpd sink (s)")
    parser.add_argument("--latency-concurrency", type=int, default=48,
                        help="SMTP connections per process to the slow sink (default 48)")
    parser.add_argument("--claim-batch", type=int, default=500, help="[delivery] claim_batch (default 500)")
    parser.add_argument("--source-sessions", type=int, default=32, help="smtp-source parallel sessions")
    parser.add_argument("--naive-sample", type=int, default=300, help="recipients sent the naive way")
    parser.add_argument("--sinks", type=lambda s: s.split(","), default=["sink", "latency"],
                        help="which sinks to send to, comma-separated: sink (smtp-sink), latency (the 20 ms "
                             "aiosmtpd sink); default both")
    parser.add_argument("--baseline", type=Path, metavar="TREE", action="append", default=[],
                        help="also run every library configuration with the code of this checkout (e.g. a git "
                             "worktree of main), alternating with this tree's, in the same run; may be repeated")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each library configuration (per tree with --baseline); default 1")
    parser.add_argument("--plain-aiosmtplib", action="store_true",
                        help="also run 1 process to smtp-sink sending each message with aiosmtplib's own mail(), "
                             "rcpt() and data() (bench-only comparison with the pipelined session; not a target row)")
    parser.add_argument("--scale", action="store_true",
                        help="instead: peak RSS of delivery at --scale-sizes recipients (smtp-sink)")
    parser.add_argument("--scale-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000],
                        help="recipient counts for --scale (default 10000,100000)")
    parser.add_argument("--profile", choices=("sink", "latency"),
                        help="instead: cProfile one 1-process delivery to smtp-sink or the slow sink")
    parser.add_argument("--profile-processes", type=int, default=1,
                        help="sending processes profiled at once on one ledger (default 1)")
    parser.add_argument("--top", type=int, default=25, help="functions shown per --profile listing")
    parser.add_argument("--verp", action="store_true",
                        help="send with [inbound] domain set: each message's envelope sender is its signed VERP "
                             "address (the configuration of a list that processes its bounces)")
    parser.add_argument("--dkim", action="store_true",
                        help="sign every message with DKIM: a fresh 2048-bit RSA key (openssl) in a [delivery.dkim] "
                             "table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even when a target is missed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        help="instead: Celery worker counts to run, comma-separated (e.g. 1,2), with "
                             "--database postgresql; runs bench/send_workers.py (see its docstring)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="store of the runs (default sqlite; --workers needs postgresql)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["kind"]](spec)), flush=True)
        return 0
    if args.workers or args.database != "sqlite":
        if not args.workers or args.database != "postgresql":
            raise SystemExit("--workers N[,N] goes with --database postgresql (and only with it)")
        from send_workers import main as workers_main  # bench/send_workers.py, beside this file

        return workers_main(["--recipients", str(args.recipients), "--workers", *map(str, args.workers),
                             "--processes", *map(str, args.processes), "--concurrency", str(args.concurrency),
                             "--batch-size", str(args.claim_batch),
                             *(["--json", str(args.json)] if args.json else [])])
    for tool in (SMTP_SINK, SMTP_SOURCE):
        if not Path(tool).is_file():
            raise SystemExit(f"{tool} not found: install Debian's postfix package (only its test tools are used)")
    os.environ[SECRET_ENV] = secrets.token_urlsafe(32)
    global EXTRA_CONFIG
    if args.verp:
        EXTRA_CONFIG = INBOUND_TABLE
    folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
    if args.dkim:
        key = folder / "dkim.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        EXTRA_CONFIG += f'\n[delivery.dkim]\nselector = "bench"\ndomain = "example.org"\nprivate_key_path = "{key}"\n'
    say(f"machine: {machine()}" + (" (VERP on)" if args.verp else "") + (" (DKIM on)" if args.dkim else ""))
    started = time.perf_counter()
    try:
        if args.profile:
            checks, results = profile_run(args, folder)
        elif args.scale:
            checks, results = scale_run(args, folder)
        else:
            checks, results = main_run(args, folder)
    finally:
        if args.keep:
            say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    say(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"checks": [asdict(c) for c in checks], **results}, indent=2, default=str))
    return 1 if any(not c.met for c in checks) and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
