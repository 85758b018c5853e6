"""End to end through a real Postfix: the edition goes out with VERP senders, the "remote" server behind
Postfix refuses some readers after Postfix accepted them, Postfix writes the DSNs itself to the VERP
addresses, and its transport for the bounce domain hands them to `newsletter inbound` (LMTP)."""

from __future__ import annotations

import email
import email.policy
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.delivery.verp import token_in, verify_token
from newsletter.storage.db import open_database
from subscribers.evidence import EvidenceStore
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring
from tests.conftest import ROOT, spawn
from tests.inbound_support import wait_for_port
from tests.mailsink import Fault, MailSink
from tests.postfix_support import Postfix
from tests.support import free_port

SECRET = "k1:postfix-test-secret-0123456789"
DOMAIN = "bounces.example.org"
READERS = ["ok1@example.com", "ok2@example.com", "hard@example.com", "soft@example.com"]


def _config(folder: Path, *, postfix_port: int, inbound_port: int) -> Path:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text += (f'\n[delivery]\nport = {postfix_port}\nconcurrency = 2\ntimeout_seconds = 10\n'
             f'\n[inbound]\ndomain = "{DOMAIN}"\nprotocol = "lmtp"\nport = {inbound_port}\n')
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _wait(condition: object, timeout: float, what: str, postfix: Postfix) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout}s; Postfix log:\n{postfix.maillog()[-4000:]}")


@pytest.mark.slow
@pytest.mark.needs("postfix")
def test_postfix_dsns_reach_the_listener_and_mark_exactly_the_refused_readers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    postfix_port, inbound_port = free_port(), free_port()
    config = _config(tmp_path, postfix_port=postfix_port, inbound_port=inbound_port)
    with MailSink() as remote, Postfix(port=postfix_port, remote_port=remote.port, bounce_domain=DOMAIN,
                                       inbound_port=inbound_port, inbound_transport="lmtp",
                                       queue_lifetime="15s") as postfix:
        remote.add_fault(Fault(phase="rcpt", action="reply", reply="550 5.1.1 <hard@example.com>: no such user",
                               recipient="hard@example.com", times=None))
        remote.add_fault(Fault(phase="rcpt", action="reply", reply="450 4.2.2 <soft@example.com>: mailbox full",
                               recipient="soft@example.com", times=None))
        spawn(["--config", str(config), "inbound"])
        wait_for_port(inbound_port)
        runner = CliRunner()
        assert runner.invoke(cli, ["--config", str(config), "fetch"]).exit_code == 0
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        store = SubscriberStore(engine)
        ids = {e: store.add(e, topics=["agents", "reasoning", "retrieval"], now=datetime.now(UTC)).id for e in READERS}
        result = runner.invoke(cli, ["--config", str(config), "send"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "4 sent" in result.output, result.output + postfix.maillog()[-3000:]

        def status(address: str) -> str:
            return store.get(ids[address]).status  # type: ignore[union-attr]

        _wait(lambda: status("hard@example.com") == "bounced", 60, "the hard bounce was not applied", postfix)
        evidence = EvidenceStore(engine)
        _wait(lambda: evidence.events(ids["soft@example.com"]), 120, "the soft bounce was not counted", postfix)

        assert {address: status(address) for address in READERS} == {
            "ok1@example.com": "active", "ok2@example.com": "active", "hard@example.com": "bounced",
            "soft@example.com": "active"}  # one soft bounce of the three that make a reader bounced
        (hard,) = evidence.events(ids["hard@example.com"])
        assert (hard.kind, hard.action, hard.status, hard.attributed_by) == ("hard-bounce", "bounced", "5.1.1", "verp")
        assert "no such user" in hard.diagnostic
        (soft,) = evidence.events(ids["soft@example.com"])
        assert (soft.kind, soft.action, soft.status) == ("soft-bounce", "counted", "4.2.2")
        assert hard.message_id is not None
        assert hard.message_id.endswith("@example.org>")

        delivered = remote.by_recipient()
        assert sorted(delivered) == ["ok1@example.com", "ok2@example.com"]
        keyring = Keyring.parse(SECRET)
        for address, (message,) in delivered.items():
            token = token_in(message.mail_from, local_part="bounces", domain=DOMAIN)
            assert token is not None
            assert verify_token(keyring, token).subscriber_id == ids[address]
            parsed = email.message_from_bytes(message.data, policy=email.policy.default)
            assert f"mailto:unsubscribe@{DOMAIN}?subject=unsubscribe" in str(parsed["List-Unsubscribe"])
