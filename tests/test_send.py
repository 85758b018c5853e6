"""`newsletter send` end to end: real feeds, real SQLite, a real SMTP server, processes killed mid-run."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from newsletter.usecases.campaign import prepare
from subscribers.store import SubscriberStore
from tests.conftest import ROOT, spawn
from tests.mailsink import Fault, MailSink
from tests.support import run as cli_run
from tests.support import secret_fixture

SECRET = "k1:test-secret-0123456789abcdef"
TOPIC_SETS = [("agents", "reasoning"), ("retrieval",), ("efficient-training", "vision-multimodal"),
              ("safety-alignment", "agents", "retrieval")]


def make_config(folder: Path, sink: MailSink, *, extra: str = "") -> Path:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text += f'\n[delivery]\nport = {sink.port}\nconcurrency = 4\ntimeout_seconds = 5\n{extra}\n'
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def add_subscribers(config: Path, count: int) -> list[str]:
    settings = load_settings(config)
    store = SubscriberStore(open_database(settings.newsletter.database_url))
    emails = []
    for i in range(count):
        emails.append(f"reader{i}@example.com")
        store.add(emails[-1], name=f"Reader {i}", topics=TOPIC_SETS[i % len(TOPIC_SETS)], now=datetime.now(UTC))
    return emails


secret = secret_fixture(SECRET)


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_send_delivers_one_email_per_reader_and_resumes_as_a_no_op(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 12)
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert "12 recipients of 12 subscribers, 4 distinct emails (4 rendered now)" in output
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    code, output = cli_run(config, "send")
    assert code == 0
    assert "this run: 0 sent" in output
    assert "(0 rendered now)" in output
    assert len(sink.messages) == 12
    message = email.message_from_bytes(sink.by_recipient()[emails[0]][0].data, policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message["List-Unsubscribe"].strip()  # folded after the colon: unfolded, a space leads
    assert unsubscribe.startswith("<http://127.0.0.1:8000/unsubscribe/k1.")
    assert "mailto:papers@example.org?subject=unsubscribe" in unsubscribe
    assert message["Message-ID"].endswith("@example.org>")
    assert message["Date"]
    assert message.get_body(("plain",)) is not None
    body = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi Reader," in body  # the first name
    assert emails[0] in body
    assert "/manage/k1." in body


def test_unknown_recipients_bounce_and_are_not_mailed_again(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    cli_run(config, "fetch")
    emails = add_subscribers(config, 3)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="550 5.1.1 No such user", recipient=emails[1]))
    code, _output = cli_run(config, "send")
    assert code == 0
    settings = load_settings(config)
    store = SubscriberStore(open_database(settings.newsletter.database_url))
    assert store.get_by_email(emails[1]).status == "bounced"  # type: ignore[union-attr]
    assert store.get_by_email(emails[0]).status == "active"  # type: ignore[union-attr]


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_readers_who_leave_mid_edition_are_suppressed_at_claim_time(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    cli_run(config, "fetch")
    emails = add_subscribers(config, 6)
    assert cli_run(config, "send", "--limit", "2")[0] == 0  # the ledger holds all six; two are sent
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    store = SubscriberStore(engine)
    waiting = [e for e in emails if e not in sink.by_recipient()]
    assert len(waiting) == 4
    leaving = [store.get_by_email(e) for e in waiting[:2]]
    store.unsubscribe(leaving[0].id, now=datetime.now(UTC))  # type: ignore[union-attr]
    store.mark_bounced(leaving[1].id, now=datetime.now(UTC))  # type: ignore[union-attr]
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert set(sink.by_recipient()) == set(emails) - set(waiting[:2])
    counts = Ledger(engine).counts(1)
    assert (counts["sent"], counts["suppressed"]) == (4, 2)
    assert "this run: 2 sent, 0 deferred, 0 failed, 0 ambiguous, 2 suppressed, 0 released" in output, output


def _send_process(config: Path) -> subprocess.Popen[bytes]:
    return spawn(["--config", str(config), "send"])


def _wait_for(sink: MailSink, count: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(sink.messages) < count:
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"only {len(sink.messages)} messages arrived"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_sigkill_at_any_point_never_duplicates_and_loses_nothing(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="lease_seconds = 1\nclaim_batch = 20")
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 120)
    sink.reply_delay = 0.01
    for received in (1, 30, 75):  # kill after the first message, early, and late
        process = _send_process(config)
        _wait_for(sink, received, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        time.sleep(1.1)  # the dead process's claims expire
    sink.reply_delay = 0
    code, output = cli_run(config, "send")
    assert code == 0, output
    ledger = Ledger(open_database(load_settings(config).newsletter.database_url))
    counts = ledger.counts(1)
    assert counts["pending"] == counts["claimed"] == counts["deferred"] == counts["failed"] == 0
    assert counts["sent"] + counts["ambiguous"] == 120
    copies = {a: len(m) for a, m in sink.by_recipient().items()}
    assert all(n == 1 for n in copies.values()), copies
    ambiguous = {row["email"] for row in ledger.rows(1, state="ambiguous")}
    assert {e for e in emails if e not in copies} <= ambiguous  # only an ambiguous row may be missing
    assert counts["ambiguous"] <= 3 * 4  # at most the in-flight messages (4 connections) of each killed run
    for address in ambiguous:
        assert f"ambiguous {address}" in output


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_the_next_run_completes(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="claim_batch = 20")
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 80)
    sink.reply_delay = 0.01
    process = _send_process(config)
    _wait_for(sink, 20, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 3, output  # stopped with rows left: not a success
    assert "stopped with" in output
    assert "messages left to send" in output
    counts = Ledger(open_database(load_settings(config).newsletter.database_url)).counts(1)
    assert counts["ambiguous"] == 0
    assert counts["claimed"] == 0
    assert 20 <= counts["sent"] < 80
    assert counts["pending"] == 80 - counts["sent"]
    sink.reply_delay = 0
    assert cli_run(config, "send")[0] == 0
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)


def test_empty_edition_sends_nothing_and_says_why(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    add_subscribers(config, 2)
    code, output = cli_run(config, "send")
    assert code == 0
    assert "nothing to send (no new papers since" in output
    assert sink.messages == []


def test_demo_runs_the_whole_pipeline_offline(tmp_path: Path) -> None:
    code, output = CliRunner().invoke(cli, ["demo", "--folder", str(tmp_path / "demo")]).exit_code, ""
    assert code == 0
    maildir = list((tmp_path / "demo" / "Maildir" / "new").iterdir())
    assert len(maildir) == 5
    message = email.message_from_bytes(maildir[0].read_bytes(), policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert output == ""


def test_dry_run_renders_and_counts_without_sending_or_recording(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    cli_run(config, "fetch")
    add_subscribers(config, 8)
    code, output = cli_run(config, "send", "--dry-run")
    assert code == 0, output
    assert "Dry run of daily-" in output
    assert "8 emails in 4 distinct variants to 8 subscribers; 0 have nothing new; 0 already in the ledger" in output
    assert sink.messages == []
    engine = open_database(load_settings(config).newsletter.database_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM editions").scalar_one() == 0
        assert connection.exec_driver_sql("SELECT count(*) FROM deliveries").scalar_one() == 0
        assert connection.exec_driver_sql("SELECT count(*) FROM sent_papers").scalar_one() == 0


def test_to_sends_one_test_copy_outside_the_ledger(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    cli_run(config, "fetch")
    add_subscribers(config, 5)
    code, output = cli_run(config, "send", "--to", "editor@example.net")
    assert code == 0, output
    assert "sent a test copy of daily-" in output
    assert "to editor@example.net" in output
    assert [m.rcpt_tos for m in sink.messages] == [("editor@example.net",)]
    code, output = cli_run(config, "send")
    assert code == 0
    assert len(sink.messages) == 1 + 5  # the real send is unaffected by the test copy


CHILD_NEEDS_NONE_OF = ("premailer", "jinja2", "cssutils", "requests", "apprise", "dkim", "alembic")


def test_a_sending_child_starts_without_what_only_rendering_posting_or_migrating_need(
    tmp_path: Path, sink: MailSink
) -> None:
    """Each child of `send --processes N` pays its start before its first message, once per send: the variants
    are rendered already (no Jinja, no Premailer), chat posts are the parent's (no apprise or requests), no
    dkimpy without [delivery.dkim], and the parent migrated the database (no alembic)."""
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 4)
    settings = load_settings(config)
    prepared = prepare(settings, open_database(settings.newsletter.database_url), frequency="daily",
                       now=datetime.now(UTC), day=None, signer=signer_from_settings(settings))
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "newsletter.delivery.child", str(config), str(prepared.edition.id),
         "2"], capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ))
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1])["sent"] == 2
    assert len(sink.messages) == 2
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in completed.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "sqlalchemy" in imported
    assert imported & set(CHILD_NEEDS_NONE_OF) == set()


@pytest.mark.slow
def test_two_sending_processes_share_the_ledger(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="claim_batch = 10")
    config.write_text(config.read_text().replace("concurrency = 4", "concurrency = 2"))
    cli_run(config, "fetch")
    emails = add_subscribers(config, 60)
    sink.reply_delay = 0.05  # slow enough that the second process starts before the first is done
    code, output = cli_run(config, "send", "--processes", "2")
    assert code == 0, output
    assert "this run: 60 sent" in output
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    ledger = Ledger(open_database(load_settings(config).newsletter.database_url))
    workers = ledger.by_worker(1)
    assert len(workers) == 2  # both processes claimed rows
    assert sum(w["sent"] for w in workers.values()) == 60
