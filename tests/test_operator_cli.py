"""The smaller operator-experience fixes, each through the real command: the words, the options, the logs."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.storage.db import open_database
from subscribers.store import SubscriberStore
from tests import support
from tests.conftest import ROOT
from tests.mailsink import Fault, MailSink
from tests.support import free_port, secret_fixture

SECRET = "k1:operator-secret-0123456789"


secret = secret_fixture(SECRET)


def offline_config(folder: Path, port: int = 1, extra: str = "") -> Path:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text += f"\n[delivery]\nport = {port}\ntimeout_seconds = 5\n{extra}\n"
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    return support.run(None, *args)


def add(config: Path, address: str, topics: tuple[str, ...], name: str = "") -> None:
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    store.add(address, name=name, topics=topics, now=datetime.now(UTC))


def test_global_options_are_accepted_after_the_subcommand(tmp_path: Path) -> None:
    config = offline_config(tmp_path)
    add(config, "ada@example.org", ("agents",))
    assert run("subscribers", "list", "--json", "--config", str(config))[0] == 0
    code, output = run("subscribers", "list", f"--config={config}", "--json")
    assert (code, json.loads(output)["count"]) == (0, 1)
    code, output = run("subscribers", "list", f"--config={config}", "-v")
    assert code == 0
    assert " INFO " in output
    assert "ada@example.org" in output
    code, output = run("status", "--config", str(tmp_path / "missing.toml"))
    assert (code, output.splitlines()[-1]) == (
        1, f"Error: config file not found: {tmp_path / 'missing.toml'} (pass --config PATH or set NEWSLETTER_CONFIG)")


def test_subscribers_list_keeps_addresses_whole_and_output_unwrapped_when_piped(tmp_path: Path) -> None:
    config = offline_config(tmp_path)
    long_address = "a.very.long.address.of.a.reader.in.the.lab@department-of-computer-science.example.org"
    add(config, long_address, ("agents", "reasoning", "retrieval", "safety-alignment"), name="Ada Augusta Lovelace")
    code, output = run("--config", str(config), "subscribers", "list")
    assert code == 0
    row = next(line for line in output.splitlines() if long_address in line)
    assert "Ada Augusta Lovelace" in row
    assert "agents, reasoning, retrieval, safety-alignment" in row
    assert len(row) > 120  # one line, not hard-wrapped at 80 columns because stdout is not a terminal


@pytest.mark.parametrize(("value", "message"), [
    ("short", "the key is not valid (its secret has 5 characters)"),
    ("k1:0123456789abcdefgh,bad id:0123456789abcdefgh", "key 2 of 2 is not valid (its id is not alphanumeric)"),
])
def test_the_secret_error_says_what_the_docs_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                                                 message: str) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", value)
    config = offline_config(tmp_path)
    assert run("--config", str(config), "subscribers", "add", "ada@example.org", "--confirm") == (
        1, f"Error: NEWSLETTER_SECRET: {message}; expected 'secret' or 'id:secret,id:secret' (the first signs, all "
           "verify) with alphanumeric ids and secrets of 16 characters or more\n")


def test_date_options_show_and_expect_yyyy_mm_dd() -> None:
    code, output = run("send", "--help")
    assert "--date YYYY-MM-DD" in output
    assert "%Y" not in output
    code, output = run("papers", "--help")
    assert "--since YYYY-MM-DD[THH:MM]" in output
    assert "%Y" not in output
    code, output = run("preview", "--date", "27/04/2026")
    assert code == 2
    assert "'27/04/2026' is not a date; expected YYYY-MM-DD" in output


def test_dry_run_shows_who_gets_which_variant_in_correct_plurals(tmp_path: Path) -> None:
    config = offline_config(tmp_path)
    assert run("--config", str(config), "fetch")[0] == 0
    add(config, "ada@example.org", ("agents",))
    add(config, "bob@example.org", ("agents",))
    add(config, "cy@example.org", ("retrieval",))
    code, output = run("--config", str(config), "send", "--dry-run")
    assert code == 0, output
    lines = output.splitlines()
    assert any("ada@example.org, bob@example.org" in line and " 2 " in line for line in lines), output
    assert any("cy@example.org" in line and " 1 " in line for line in lines), output
    assert "3 emails in 2 distinct variants to 3 subscribers; 0 have nothing new; 0 already in the ledger" in output
    add(config, "dee@example.org", ("agents",))
    code, output = run("--config", str(config), "send", "--dry-run", "--frequency", "daily")
    assert "4 emails in 2 distinct variants to 4 subscribers" in output


def test_ambiguous_deliveries_name_their_message_ids(tmp_path: Path, sink: MailSink) -> None:
    config = offline_config(tmp_path, sink.port)
    assert run("--config", str(config), "fetch")[0] == 0
    add(config, "ada@example.org", ("agents",))
    sink.add_fault(Fault(phase="dot", action="drop"))
    _code, output = run("--config", str(config), "send")
    line = next(line for line in output.splitlines() if line.startswith("ambiguous ada@example.org"))
    stored = email.message_from_bytes(sink.messages[0].data, policy=email.policy.default)
    assert f"Message-ID {stored['Message-ID']}:" in line, output


@pytest.mark.slow  # a `serve` process
def test_serve_takes_host_and_port_and_logs_only_json_lines(tmp_path: Path) -> None:
    config = offline_config(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--log-format", "json", "--config", str(config), "serve",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "serve did not answer on --port"
                time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    lines = stderr.decode().splitlines()
    entries = [json.loads(line) for line in lines]  # a plain line fails here
    assert any(e["logger"] == "uvicorn.error" and f"127.0.0.1:{port}" in e["message"] for e in entries), lines


def test_the_docs_install_from_a_checkout() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "pip install trending-papers-newsletter" not in text, path
        assert "pip install 'trending-papers-newsletter" not in text, path
