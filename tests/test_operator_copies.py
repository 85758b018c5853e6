"""`send --to ADDRESS [--subscriber EMAIL]` for an edition that already went out, over real SMTP."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from subscribers.store import SubscriberStore
from tests.conftest import ROOT
from tests.mailsink import MailSink
from tests.support import run

TOPICS = [("agents", "reasoning"), ("retrieval",), ("agents", "reasoning")]


@pytest.fixture
def config(tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SECRET", "k1:copies-secret-0123456789")
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    path = tmp_path / "config.toml"
    path.write_text(text + f"\n[delivery]\nport = {sink.port}\ntimeout_seconds = 5\n", encoding="utf-8")
    return path


def subject(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Subject"])


def test_a_copy_of_a_sent_edition_and_of_one_readers_email(config: Path, sink: MailSink) -> None:
    assert run(config, "fetch")[0] == 0
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    for i, topics in enumerate(TOPICS):
        store.add(f"reader{i}@example.com", name=f"Reader {i}", topics=topics, now=datetime.now(UTC))
    code, output = run(config, "send")
    assert code == 0, output
    got = {m.rcpt_tos[0]: subject(m.data) for m in sink.messages}
    assert len(got) == 3
    ledger = Ledger(open_database(load_settings(config).newsletter.database_url))
    before = ledger.counts(1)

    code, output = run(config, "send", "--to", "editor@example.net")  # the edition has gone out
    assert code == 0, output
    assert "(the email of 2 readers) to editor@example.net" in output
    assert subject(sink.messages[-1].data) == got["reader0@example.com"]

    code, output = run(config, "send", "--to", "editor@example.net", "--subscriber", "reader1@example.com")
    assert code == 0, output
    assert "(reader1@example.com's email) to editor@example.net" in output
    copy = email.message_from_bytes(sink.messages[-1].data, policy=email.policy.default)
    assert (str(copy["Subject"]), copy["To"]) == (got["reader1@example.com"], "editor@example.net")
    assert ledger.counts(1) == before  # the ledger is not touched
    assert len(sink.messages) == 5

    assert run(config, "send", "--to", "editor@example.net", "--subscriber", "nobody@example.com") == (
        1, "Error: no subscriber 'nobody@example.com'\n")
    assert run(config, "send", "--subscriber", "reader1@example.com")[0] == 2


LOADED = """
import sys
from newsletter.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="newsletter")
except SystemExit as done:
    assert not done.code, done.code
print(sorted(m for m in ("sklearn", "scipy", "torch") if m in sys.modules))
"""


@pytest.mark.slow  # a `send` process: 6-11 s
def test_send_of_a_stored_edition_loads_no_scikit_learn_scipy_or_torch(config: Path, sink: MailSink) -> None:
    assert run(config, "fetch")[0] == 0
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    store.add("reader@example.com", name="Reader", topics=("agents",), now=datetime.now(UTC))
    for args, loaded in ((["send"], "['scipy', 'sklearn']"),  # builds the edition: matching needs them
                         (["send"], "[]"),  # resumes the stored edition
                         (["send", "--to", "editor@example.net"], "[]")):
        done = subprocess.run([sys.executable, "-c", LOADED, "--config", str(config), *args], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ))
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == loaded, (args, done.stdout)
