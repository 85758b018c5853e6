"""Confirmation emails go through the outbox and one bounded background sender (issue 17, item 2).

A real uvicorn server (``run_server``) on 127.0.0.1 and a real SMTP sink whose greeting stalls: sign-ups are
answered while the relay is stuck, no more SMTP connections are open than ``[web] confirmation_concurrency``,
and every confirmation arrives exactly once after the relay recovers — also when the web server is stopped
in between and a new one takes over the outbox.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable
from pathlib import Path

import httpx
import pytest

from newsletter.config import Settings, load_settings
from newsletter.storage.db import open_database
from newsletter.storage.outbox import ConfirmationOutbox
from newsletter.web.server import run_server
from tests.conftest import write_config
from tests.email_support import FIXTURE_SOURCES, POSTAL
from tests.mailsink import Fault, MailSink
from tests.web_support import SECRET, csrf_token

STALL = 30.0
"""The relay holds every greeting this long; it recovers when the test clears the fault (new connections)."""
CONCURRENCY = 3
SIGNUPS = 40


def _settings(folder: Path, sink: MailSink) -> Settings:
    extra = (f'[email]\npostal_address = "{POSTAL}"\n'
             f"[delivery]\nport = {sink.port}\ntimeout_seconds = 30\nretry_base_seconds = 0.2\n"
             f"[web]\nsubscribe_limit_per_ip = 1000\nconfirmation_concurrency = {CONCURRENCY}\n")
    return load_settings(write_config(folder, FIXTURE_SOURCES, extra=extra))


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _serve(settings: Settings, port: int) -> asyncio.Task[None]:
    engine = open_database(settings.newsletter.database_url)
    task = asyncio.create_task(run_server(settings, engine, host="127.0.0.1", port=port, handle_signals=False))
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return task
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
    raise AssertionError("the web server did not start")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _client_connections(port: int) -> int:
    """Established TCP connections *to* ``port`` on loopback, from /proc/net/tcp: the senders' side, so a
    connection the sender closed counts at once (the sink's side may linger half-closed)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state = int(fields[2].split(":")[1], 16), fields[3]
        count += remote_port == port and state == "01"
    return count


async def _watch_connections(port: int, peak: list[int]) -> None:
    while True:
        peak.append(_client_connections(port))
        await asyncio.sleep(0.02)


async def _sign_up(base: str, count: int) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        token = csrf_token((await client.get("/")).text)

        async def one(i: int) -> tuple[int, float]:
            response = await client.post("/subscribe", data={"csrf_token": token, "email": f"reader{i}@example.org",
                                                             "topics": "agents", "frequency": "daily"})
            return response.status_code, time.monotonic()

        calls: list[Awaitable[tuple[int, float]]] = [one(i) for i in range(count)]
        return list(await asyncio.gather(*calls))


@pytest.mark.slow
async def test_a_stalled_relay_neither_blocks_sign_ups_nor_loses_or_repeats_a_confirmation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    with MailSink() as sink:
        settings = _settings(tmp_path, sink)
        port = _port()
        base = f"http://127.0.0.1:{port}"
        server = await _serve(settings, port)
        sink.add_fault(Fault("connect", "delay", seconds=STALL, times=None))
        peak: list[int] = []
        watcher = asyncio.create_task(_watch_connections(sink.port, peak))
        started = time.monotonic()
        answers = await _sign_up(base, SIGNUPS)
        assert [status for status, _ in answers] == [200] * SIGNUPS
        assert max(when for _, when in answers) - started < STALL / 3  # none waited for the relay
        await asyncio.sleep(0.5)
        assert sink.messages == []
        assert _client_connections(sink.port) == CONCURRENCY  # the sender is stuck on its greetings
        await _stop(server)  # a restart while the sender's connections wait for a greeting
        sink.clear_faults()
        server = await _serve(settings, _port())  # the new process (a new port: the old one may linger)
        deadline = time.monotonic() + 60
        while len(sink.messages) < SIGNUPS and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything sent twice would arrive now
        await _stop(server)
        watcher.cancel()
    assert max(peak) <= CONCURRENCY
    received = sorted(r for m in sink.messages for r in m.rcpt_tos)
    assert received == sorted(f"reader{i}@example.org" for i in range(SIGNUPS))  # each exactly once
    counts = ConfirmationOutbox(open_database(settings.newsletter.database_url)).counts()
    assert counts == {"sent": SIGNUPS}


@pytest.mark.slow
def test_sigterm_gives_back_the_rows_the_sender_had_taken(tmp_path: Path) -> None:
    """uvicorn re-raises SIGTERM as ``serve()`` returns: the sender must stop inside its shutdown."""
    import os
    import signal
    import subprocess
    import sys

    with MailSink() as sink:
        settings = _settings(tmp_path, sink)
        port = _port()
        sink.add_fault(Fault("connect", "delay", seconds=STALL, times=None))
        code = ("import asyncio, sys\n"
                "from newsletter.config import load_settings\n"
                "from newsletter.storage.db import open_database\n"
                "from newsletter.web.server import run_server\n"
                "s = load_settings(sys.argv[1])\n"
                "asyncio.run(run_server(s, open_database(s.newsletter.database_url), host='127.0.0.1',"
                " port=int(sys.argv[2])))\n")
        server = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "config.toml"), str(port)],
                                  env={**os.environ, "NEWSLETTER_SECRET": SECRET}, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)
            answers = asyncio.run(_sign_up(base, 6))
            assert [status for status, _ in answers] == [200] * 6
            deadline = time.monotonic() + 10
            while _client_connections(sink.port) < CONCURRENCY and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _client_connections(sink.port) == CONCURRENCY
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        finally:
            server.kill()
    outbox = ConfirmationOutbox(open_database(settings.newsletter.database_url))
    assert outbox.counts() == {"queued": 6}  # none left "sending" until its lease ends
