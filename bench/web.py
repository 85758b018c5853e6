"""Load generator for the public web pages on loopback: a fresh install against a year of editions.

Why: the archive and the feeds used to parse every stored edition's JSON snapshot on each request, so their
cost grew with history (5.4 s for ``/archive`` at 302 editions; 16 concurrent GETs exhausted the connection
pool and a one-click unsubscribe sent meanwhile failed after 31.8 s). Issue 17's targets, with 365 daily
editions of about 60 papers at 16 concurrent requests: GET ``/archive``, an edition page and a topic feed each
have p99 ≤ 250 ms and a throughput within 2× of a fresh install; a one-click unsubscribe sent during that
load answers 200 within 1 s.

How: two SQLite databases are built through the real ``EditionStore.insert`` (``tests/archive_support``):
"fresh" with 1 edition, "year" with 365 editions of 60 papers. For each, ``newsletter web``'s server
(``run_server``: uvicorn + the Starlette app) runs in a child process pinned to CPU 0; this process, on the
other CPU, keeps 16 requests in flight per page with httpx for ``--requests`` requests (after a warm-up of
16, which renders and stores the edition page once), records each latency and reports p50/p99 and requests
per second. During the year's ``/archive`` phase one RFC 8058 one-click unsubscribe POST is sent and timed.
The server's peak RSS (VmHWM) is read from /proc at the end.

A second part, ``--relay``, is the stalled-relay run of the issue: the SMTP relay (tests/mailsink.py, in this
process) holds every greeting for 30 s; 200 sign-ups arrive over 10 s; the web server is stopped (SIGTERM)
and a new one started while the relay is still stuck; then the relay recovers. Reported: the sign-ups'
answer times, the most SMTP connections open to the relay at once (client side, from /proc/net/tcp), and
how many confirmations arrived, and whether any arrived twice.

    python bench/web.py                     # 400 requests per page and database
    python bench/web.py --requests 200      # quicker
    python bench/web.py --relay             # only the stalled-relay run (about a minute)
    python bench/web.py --console           # the operator's console after a year, beside the public pages
    python bench/web.py --console --folder /tmp/year   # keep the year's database for the next run

``--console`` (issue 27): one database with a year of history (``bench/console_history.py``: 365 daily
editions, 20,000 readers who joined over the year, the 3.65 million ledger rows that leaves, bounces,
complaints and votes); a signed-in session's cookie; each console page and each public page loaded in turn
like the pages above, 16 in flight. Target: p99 ≤ 250 ms for every console page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from newsletter.config import load_settings  # noqa: E402
from newsletter.storage.db import open_database  # noqa: E402
from newsletter.storage.editions import EditionStore  # noqa: E402
from newsletter.storage.outbox import ConfirmationOutbox  # noqa: E402
from subscribers.store import SubscriberStore  # noqa: E402
from subscribers.tokens import Keyring, TokenSigner  # noqa: E402
from tests.archive_support import add_editions  # noqa: E402
from tests.conftest import TOPICS_TOML, write_config  # noqa: E402
from tests.email_support import FIXTURE_SOURCES  # noqa: E402

SECRET = "k1:bench-web-secret-0123456789"
CONCURRENCY = 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_site(folder: Path, *, editions: int, papers: int, extra: str = "") -> tuple[Path, str, str]:
    """A config and database with ``editions`` editions and one active reader; (config, an edition slug,
    that reader's unsubscribe path)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, FIXTURE_SOURCES, extra=extra, topics=TOPICS_TOML)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    slugs = add_editions(EditionStore(engine), count=editions, papers=papers)
    reader = SubscriberStore(engine).add("reader@example.org", now=datetime.now(UTC), topics=["agents"])
    token = TokenSigner(Keyring.parse(SECRET)).sign("unsubscribe", reader.id)
    engine.dispose()
    return config, slugs[len(slugs) // 2], f"/unsubscribe/{token}"


def start_server(config: Path, port: int, *, cpu: int = 0) -> subprocess.Popen[bytes]:
    """``run_server`` in a child process pinned to one CPU (``os.sched_setaffinity``)."""
    code = (
        "import asyncio, os, sys\n"
        f"os.sched_setaffinity(0, {{{cpu}}})\n"
        "from newsletter.config import load_settings\n"
        "from newsletter.storage.db import open_database\n"
        "from newsletter.web.server import run_server\n"
        "settings = load_settings(sys.argv[1])\n"
        "engine = open_database(settings.newsletter.database_url)\n"
        "asyncio.run(run_server(settings, engine, host='127.0.0.1', port=int(sys.argv[2])))\n"
    )
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", code, str(config), str(port)], env=env,
                               stderr=None if os.environ.get("BENCH_LOG") else subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the web server did not start")


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the server process so far (/proc/PID/stat): what a request costs, whatever else
    runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Phase:
    path: str
    latencies: list[float]
    seconds: float
    errors: int

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


async def load(base: str, path: str, *, requests: int, during: str | None = None,
               cookies: dict[str, str] | None = None) -> tuple[Phase, float | None]:
    """``requests`` GETs of ``path`` with ``CONCURRENCY`` in flight; optionally one one-click POST meanwhile."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    unsubscribe_ms: float | None = None
    limits = httpx.Limits(max_connections=CONCURRENCY + 1, max_keepalive_connections=CONCURRENCY + 1)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60, cookies=cookies) as client:
        for _ in range(CONCURRENCY):  # warm-up: the edition page is rendered and stored once
            await client.get(path)

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        async def one_click() -> None:
            nonlocal unsubscribe_ms
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            response = await client.post(during or "", data={"List-Unsubscribe": "One-Click"})
            unsubscribe_ms = (time.perf_counter() - started) * 1000 if response.status_code == 200 else -1.0

        started = time.perf_counter()
        tasks = [worker() for _ in range(CONCURRENCY)] + ([one_click()] if during else [])
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - started
    return Phase(path, latencies, seconds, errors), unsubscribe_ms


def run_site(name: str, folder: Path, *, editions: int, papers: int, requests: int) -> list[str]:
    config, slug, unsubscribe = make_site(folder, editions=editions, papers=papers)
    port = free_port()
    server = start_server(config, port)
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        for path in ("/archive", f"/archive/{slug}", "/topics/agents.atom"):
            during = unsubscribe if path == "/archive" else None
            cpu = server_cpu_seconds(server.pid)
            phase, one_click = asyncio.run(load(base, path, requests=requests, during=during))
            cpu_ms = (server_cpu_seconds(server.pid) - cpu) * 1000 / (requests + CONCURRENCY)
            shown = "/archive/<slug>" if path.startswith("/archive/") else path
            extra = f"{one_click:.0f} ms" if one_click is not None else ""
            rows.append(f"| {name} ({editions} editions) | `{shown}` | {phase.p(0.5):.1f} | {phase.p(0.99):.1f} | "
                        f"{phase.rate:.0f} | {cpu_ms:.1f} | {phase.errors} | {extra} |")
        rows.append(f"| {name}: server peak RSS | | | | | | | {peak_rss_mib(server.pid):.0f} MiB |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def run_console(folder: Path, *, requests: int) -> list[str]:
    """The console's pages (signed in) and the public pages on one database holding a year of history
    (``bench/console_history.py``: 365 editions, 20,000 readers, 3.65 million ledger rows). A folder that
    holds one from an earlier run (``--folder``) is used again as it is."""
    import contextlib
    import json

    from bench.console_history import build_history
    from newsletter.errors import OperatorError
    from newsletter.usecases.operators import add_operator, sign_in

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    if not (folder / "history.json").exists():
        config = write_config(folder, FIXTURE_SOURCES, topics=TOPICS_TOML)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    started = time.perf_counter()
    if (folder / "history.json").exists():
        history = json.loads((folder / "history.json").read_text(encoding="utf-8"))
    else:
        history = build_history(engine)
        (folder / "history.json").write_text(json.dumps(history), encoding="utf-8")
    built = time.perf_counter() - started
    with contextlib.suppress(OperatorError):  # the account exists in the folder of an earlier run
        add_operator(engine, "bench@example.org", "a bench password of some length")
    token = sign_in(engine, "bench@example.org", "a bench password of some length", client="127.0.0.1").token
    engine.dispose()
    cookies = {"__Host-nl_admin": token}  # base_url is https: the console's cookie has the __Host- prefix
    port = free_port()
    server = start_server(config, port)
    pages = [("/admin/", cookies), ("/admin/editions", cookies), (f"/admin/editions/{history['slug']}", cookies),
             ("/admin/readers", cookies), (f"/admin/readers?q={history['search']}", cookies),
             ("/admin/readers?status=bounced&topic=agents", cookies), (f"/admin/readers/{history['reader']}", cookies),
             ("/admin/audit", cookies), ("/archive", None), (f"/archive/{history['slug']}", None),
             ("/topics/agents.atom", None)]
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        for path, jar in pages:
            cpu = server_cpu_seconds(server.pid)
            phase, _ = asyncio.run(load(base, path, requests=requests, cookies=jar))
            cpu_ms = (server_cpu_seconds(server.pid) - cpu) * 1000 / (requests + CONCURRENCY)
            shown = path.replace(str(history["slug"]), "<slug>").replace(f"readers/{history['reader']}",
                                                                          "readers/<id>")
            rows.append(f"| `{shown}` | {phase.p(0.5):.1f} | {phase.p(0.99):.1f} | {phase.rate:.0f} | {cpu_ms:.1f} "
                        f"| {phase.errors} |")
        rows.append(f"| server peak RSS | | | | {peak_rss_mib(server.pid):.0f} MiB | |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows.append(f"\n(history of {history['deliveries']:,} ledger rows built or opened in {built:.0f} s)")
    return rows


def client_connections(port: int) -> int:
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        count += int(fields[2].split(":")[1], 16) == port and fields[3] == "01"
    return count


async def relay_run(folder: Path, *, signups: int, seconds: float, stall: float) -> list[str]:
    from tests.mailsink import Fault, MailSink
    from tests.web_support import csrf_token

    with MailSink() as sink:
        extra = (f"[delivery]\nport = {sink.port}\ntimeout_seconds = {stall * 2}\n"
                 "[web]\nsubscribe_limit_per_ip = 100000\nconfirmation_concurrency = 4\n")
        config, _, _ = make_site(folder, editions=1, papers=5, extra=extra)
        port = free_port()
        server = start_server(config, port)
        sink.add_fault(Fault("connect", "delay", seconds=stall, times=None))
        stalled_at = time.monotonic()
        peak = 0
        latencies: list[float] = []
        codes: list[int] = []

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, client_connections(sink.port))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            token = csrf_token((await client.get("/")).text)

            async def one(i: int) -> None:
                await asyncio.sleep(i * seconds / signups)
                started = time.perf_counter()
                response = await client.post("/subscribe", data={
                    "csrf_token": token, "email": f"reader{i}@example.org", "topics": "agents", "frequency": "daily"})
                latencies.append(time.perf_counter() - started)
                codes.append(response.status_code)

            await asyncio.gather(*(one(i) for i in range(signups)))
        server.terminate()  # a restart while the relay is stuck
        server.wait(timeout=30)
        server = start_server(config, free_port())
        await asyncio.sleep(max(0.0, stall - (time.monotonic() - stalled_at)))
        sink.clear_faults()
        recovered = time.monotonic()
        while len(sink.messages) < signups and time.monotonic() - recovered < stall * 3:
            await asyncio.sleep(0.2)
        done = time.monotonic() - recovered
        await asyncio.sleep(2)  # a duplicate would arrive now
        server.terminate()
        server.wait(timeout=30)
        watcher.cancel()
        received = [r for m in sink.messages for r in m.rcpt_tos]
        outbox = ConfirmationOutbox(open_database(load_settings(config).newsletter.database_url)).counts()
    ordered = sorted(latencies)
    return [
        f"| sign-ups answered with HTTP 200 | {codes.count(200)} of {signups} in {seconds:.0f} s |",
        f"| answer time p50 / p99 / max | {ordered[len(ordered) // 2] * 1000:.0f} / "
        f"{ordered[int(0.99 * len(ordered))] * 1000:.0f} / {ordered[-1] * 1000:.0f} ms |",
        f"| most SMTP connections open at once (concurrency 4) | {peak} |",
        f"| confirmations delivered after the relay recovered | {len(set(received))} distinct, {len(received)} in all,"
        f" the last {done:.1f} s after recovery (the stalled greetings end first) |",
        f"| outbox rows by state at the end | {outbox} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per page and database")
    parser.add_argument("--editions", type=int, default=365)
    parser.add_argument("--papers", type=int, default=60)
    parser.add_argument("--relay", action="store_true", help="only the stalled-relay run")
    parser.add_argument("--console", action="store_true",
                        help="only the console's pages (and the public ones) after a year: 365 editions, 20,000 "
                             "readers (building the history takes a few minutes)")
    parser.add_argument("--folder", help="with --console: build the history in this folder, or use the one an "
                                         "earlier run built there")
    parser.add_argument("--signups", type=int, default=200)
    parser.add_argument("--stall", type=float, default=30.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the load generator on the other CPU; the server is pinned to CPU 0
    if args.relay:
        with tempfile.TemporaryDirectory() as tmp:
            rows = asyncio.run(relay_run(Path(tmp), signups=args.signups, seconds=10, stall=args.stall))
        print(f"| stalled relay ({args.stall:.0f} s), web restarted meanwhile | |\n| --- | --- |")
        print("\n".join(rows))
        return
    if args.console:
        if args.folder:
            rows = run_console(Path(args.folder), requests=args.requests)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                rows = run_console(Path(tmp) / "year", requests=args.requests)
        print("| page (a year: 365 editions, 20,000 readers) | p50 ms | p99 ms | req/s | server CPU ms/req | non-200 |")
        print("| --- | --: | --: | --: | --: | --: |")
        print("\n".join(rows))
        return
    print("| database | page | p50 ms | p99 ms | req/s | server CPU ms/req | non-200 "
          "| one-click unsubscribe during load |")
    print("| --- | --- | --: | --: | --: | --: | --: | --: |")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        rows = run_site("fresh", Path(tmp) / "fresh", editions=1, papers=args.papers, requests=args.requests)
        rows += run_site("year", Path(tmp) / "year", editions=args.editions, papers=args.papers,
                         requests=args.requests)
        for row in rows:
            print(row)
        print(f"\n({time.perf_counter() - started:.0f} s in all, load generator on CPU "
              f"{sorted(os.sched_getaffinity(0))}, server on CPU 0; one run)")


if __name__ == "__main__":
    main()
