"""The IMAP door against a real Dovecot: every unseen message is processed once, flagged \\Seen only after
its effect is committed, and left unseen (to be tried again) when the commit fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from imapclient import IMAPClient

from newsletter.inbound.imap import ImapPoller
from newsletter.storage.inbound import InboundLog
from tests.dovecot_support import PASSWORD, USER, Dovecot
from tests.inbound_support import DOMAIN, INBOUND_FIXTURES, dsn, inbound_settings, make_inbound
from tests.support import free_port

pytestmark = pytest.mark.needs("dovecot")


def _unseen(port: int) -> int:
    with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        return len(client.search(["UNSEEN"]))


def test_imap_poll_processes_each_message_once_and_flags_it_after_the_commit(tmp_path: Path) -> None:
    port = free_port()
    settings = inbound_settings(imap_host="127.0.0.1", imap_port=port, imap_tls=False, imap_username=USER)
    inbound = make_inbound(f"sqlite:///{tmp_path / 'imap.db'}", imap_host="127.0.0.1", imap_port=port,
                           imap_tls=False, imap_username=USER)
    hard, reader = inbound.add("hard@example.net"), inbound.add("reader@example.net")
    with Dovecot(port=port) as dovecot:
        verp = inbound.verp(hard)
        # a hosted mailbox keeps no envelope: the VERP address survives in Delivered-To
        dovecot.deliver("dsn", b"Delivered-To: " + verp.encode() + b"\r\n"
                        + dsn(to=verp, final_recipient="hard@example.net", status="5.1.1"))
        token = inbound.verp(reader).partition("+")[2].partition("@")[0]
        dovecot.deliver("ooo", (INBOUND_FIXTURES / "out-of-office-exchange.eml").read_bytes())
        dovecot.deliver("reply", (INBOUND_FIXTURES / "reader-reply.eml").read_bytes().replace(
            b"REPLACE", token.encode()))
        poller = ImapPoller(inbound.processor, settings, password=PASSWORD)

        with inbound.processor.engine.begin() as connection:  # nothing can be committed: nothing is flagged
            connection.execute(sa.text("ALTER TABLE inbound_messages RENAME TO inbound_messages_away"))
        report = poller.poll_once()
        assert (report.processed, report.deferred) == (0, 3)
        assert _unseen(port) == 3
        assert inbound.statuses()["hard@example.net"] == "active"
        with inbound.processor.engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE inbound_messages_away RENAME TO inbound_messages"))

        report = poller.poll_once()
        assert (report.processed, report.deferred) == (3, 0), dovecot.log()
        assert _unseen(port) == 0
        assert poller.poll_once().processed == 0
    assert inbound.statuses() == {"hard@example.net": "bounced", "reader@example.net": "active"}
    assert InboundLog(inbound.processor.engine).counts() == {"applied": 1, "ignored": 2}
    assert DOMAIN in verp
