"""Signed webhooks through a real `serve`: each event reaches a receiver on 127.0.0.1 once, verified with the
`standardwebhooks` package, and a receiver that was down gets what it missed afterwards, in order."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.service.jobs import housekeeping_job
from newsletter.storage.db import open_database
from newsletter.storage.webhook_outbox import WebhookOutbox
from tests.inbound_support import DOMAIN, INBOUND_FIXTURES, dsn
from tests.mailsink import MailSink
from tests.support import free_port, run, secret_fixture
from tests.test_api import api_config, make_token, start_serve, stop
from tests.test_send import SECRET
from tests.web_support import confirm_link
from tests.webhook_receiver import Receiver, new_secret

secret = secret_fixture(SECRET)
SECRET_ENV = "TEST_WEBHOOK_SECRET"


def webhook_config(folder: Path, sink: MailSink, receiver: Receiver, *, events: str = "",
                   retry: float = 0.2) -> Path:
    return api_config(folder, sink, f'\n[inbound]\ndomain = "{DOMAIN}"\nport = {free_port()}\n\n[[webhooks]]\n'
                                    f'url = "{receiver.url}"\nsecret_env = "{SECRET_ENV}"\nretry_seconds = {retry}\n'
                                    f'{events}')


@pytest.mark.slow  # one `serve`, a fetch, a send and a receiver outage
def test_each_event_arrives_once_signed_and_in_order_after_an_outage(tmp_path: Path, sink: MailSink,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    signing = new_secret()
    monkeypatch.setenv(SECRET_ENV, signing)
    receiver = Receiver(signing)
    receiver.up()
    config = webhook_config(tmp_path, sink, receiver)
    assert run(config, "fetch")[0] == 0
    readers = [f"reader{i}@example.com" for i in range(3)]
    for address in readers:
        assert run(config, "subscribers", "add", address, "--topics", "agents,retrieval")[0] == 0
    process, base = start_serve(config)
    token = make_token(config)
    api = httpx.Client(base_url=f"{base}/api/v1", headers={"authorization": f"Bearer {token}"}, timeout=30)

    # created by the API; a sign-up confirmed through its link; a send; a bounce; a complaint; an unsubscribe
    assert api.post("/subscribers", json={"email": "api@example.org", "topics": ["agents"]}).status_code == 201
    code, output = run(config, "subscribers", "add", "pending@example.org", "--confirm")
    assert code == 0, output
    assert "confirmation email sent" in output
    (confirmation,) = sink.messages
    link = confirm_link(confirmation).replace(load_settings(config).newsletter.base_url, base)
    assert httpx.post(link, timeout=30).status_code == 200
    sink.messages.clear()
    code, output = run(config, "send")
    assert code == 0, output
    senders = {m.rcpt_tos[0]: m.mail_from for m in sink.messages}
    report = tmp_path / "dsn.eml"
    report.write_bytes(dsn(to=senders[readers[0]], final_recipient=readers[0], status="5.1.1"))
    assert "hard-bounce → applied" in run(config, "inbound", "--file", str(report), "--rcpt", senders[readers[0]])[1]
    verp = senders[readers[1]].partition("+")[2].partition("@")[0]
    arf = tmp_path / "arf.eml"
    arf.write_bytes((INBOUND_FIXTURES / "arf-yahoo.eml").read_bytes().replace(b"REPLACE", verp.encode())
                    .replace(b"MESSAGEID", b"<m@example.org>"))
    assert "complaint → applied" in run(config, "inbound", "--file", str(arf))[1]
    assert run(config, "subscribers", "remove", readers[2])[0] == 0

    expected = Counter({"subscriber.created": 5, "subscriber.confirmed": 1, "edition.built": 1, "edition.sent": 1,
                        "subscriber.bounced": 1, "subscriber.complained": 1, "subscriber.unsubscribed": 1})
    received = receiver.wait_for(sum(expected.values()))
    time.sleep(1.5)  # anything sent twice would arrive meanwhile
    assert Counter(e.type for e in receiver.events) == expected, receiver.dump()
    assert receiver.unverified == 0
    assert len({e.webhook_id for e in receiver.events}) == len(receiver.events)  # once per occurrence
    ids = {e.data["email"]: e.data["id"] for e in received if e.type == "subscriber.created"}
    assert receiver.of(f"subscriber:{ids['pending@example.org']}") == ["subscriber.created", "subscriber.confirmed"]
    assert receiver.of(f"subscriber:{ids[readers[0]]}") == ["subscriber.created", "subscriber.bounced"]
    assert receiver.of(f"subscriber:{ids[readers[1]]}") == ["subscriber.created", "subscriber.complained"]
    assert receiver.of(f"subscriber:{ids[readers[2]]}") == ["subscriber.created", "subscriber.unsubscribed"]
    (sent,) = [e for e in received if e.type == "edition.sent"]
    assert sent.data["deliveries"]["sent"] == 5
    assert receiver.of(f"edition:{sent.data['id']}") == ["edition.built", "edition.sent"]

    # the receiver goes away: events wait in the outbox, retried with backoff, and arrive in order afterwards
    receiver.down()
    before = len(receiver.events)
    for _ in range(2):
        assert run(config, "subscribers", "add", "flaky@example.org", "--force")[0] == 0
        assert run(config, "subscribers", "remove", "flaky@example.org")[0] == 0
    assert api.delete(f"/subscribers/{readers[2]}").json()["result"] == "unchanged"  # no change: no event
    time.sleep(2)
    listed = json.loads(run(config, "webhooks", "list", "--state", "pending", "--json")[1])
    assert len(listed["deliveries"]) == 4
    oldest, *later = reversed(listed["deliveries"])  # newest first: the first event is tried, the rest wait
    assert oldest["type"] == "subscriber.created"
    assert oldest["attempts"] >= 2
    assert "ConnectError" in oldest["last_error"]
    assert [d["attempts"] for d in later] == [0, 0, 0]
    receiver.up()
    receiver.wait_for(before + 4)
    time.sleep(1)
    flaky = [e for e in receiver.events[before:]]
    assert [e.type for e in flaky] == ["subscriber.created", "subscriber.unsubscribed",
                                       "subscriber.resubscribed", "subscriber.unsubscribed"], receiver.dump()
    assert len({e.subject for e in flaky}) == 1
    listed = json.loads(run(config, "webhooks", "list", "--json")[1])
    assert listed["endpoints"] == {receiver.url: {"pending": 0, "delivered": 15, "failed": 0}}
    assert api.get("/status").json()["webhooks"] == listed["endpoints"]
    assert run(config, "webhooks", "deliver") == (
        0, "another process (`serve` or `web`) is delivering the outbox now; nothing done\n")
    stop(process)
    receiver.down()


def test_a_webhook_without_its_secret_stops_serve_at_start_and_bad_events_are_config_errors(
        tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver(new_secret())
    monkeypatch.delenv(SECRET_ENV, raising=False)
    config = webhook_config(tmp_path, sink, receiver)
    code, output = run(config, "webhooks", "deliver")
    assert (code, output) == (1, f"Error: the signing secret of the webhook {receiver.url} (environment variable "
                                 f"{SECRET_ENV}) is not set\n")
    code, output = run(config, "serve")
    assert (code, output) == (1, f"Error: the signing secret of the webhook {receiver.url} (environment variable "
                                 f"{SECRET_ENV}) is not set\n")
    monkeypatch.setenv(SECRET_ENV, "not-a-whsec-secret")
    code, output = run(config, "web")
    assert code == 1
    assert "does not hold a secret of the form whsec_<base64>" in output
    monkeypatch.setenv(SECRET_ENV, "whsec_c2hvcnQ=")
    code, output = run(config, "webhooks", "deliver")
    assert (code, output) == (1, f"Error: the signing secret in {SECRET_ENV} is 5 bytes; use at least 24 random "
                                 "bytes (docs/webhooks.md shows how to make one)\n")
    monkeypatch.setenv(SECRET_ENV, "whsec_not*base64")
    assert run(config, "webhooks", "deliver")[1] == f"Error: the signing secret in {SECRET_ENV} is not base64 " \
                                                     "after whsec_\n"
    (tmp_path / "bad").mkdir()
    bad = webhook_config(tmp_path / "bad", sink, receiver, events='events = ["subscriber.created", "paper.fetched"]')
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.events: expected one of the event types"):
        load_settings(bad)


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_only_the_events_an_endpoint_asks_for_are_written_and_deliver_retries_later(
        tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> None:
    signing = new_secret()
    monkeypatch.setenv(SECRET_ENV, signing)
    receiver = Receiver(signing)  # down: nothing listens on its port
    config = webhook_config(tmp_path, sink, receiver, events='events = ["subscriber.unsubscribed"]', retry=2)
    assert run(config, "subscribers", "add", "a@example.org")[0] == 0
    assert run(config, "subscribers", "remove", "a@example.org")[0] == 0
    code, output = run(config, "webhooks", "deliver")
    assert code == 3
    assert "subscriber.unsubscribed msg_" in output
    assert "not delivered (ConnectError" in output
    assert output.endswith("\n0 delivered, 1 failed (to be retried), 0 given up, 0 waiting\n")
    code, output = run(config, "webhooks", "deliver")  # its retry time has not come
    assert (code, output) == (0, "0 delivered, 0 failed (to be retried), 0 given up, 1 waiting\n")
    receiver.up()
    time.sleep(2)
    code, output = run(config, "webhooks", "deliver")
    assert (code, output) == (0, "1 delivered, 0 failed (to be retried), 0 given up, 0 waiting\n")
    assert [e.type for e in receiver.events] == ["subscriber.unsubscribed"]
    assert f"webhook {receiver.url}: 1 delivered, 0 pending\n" in run(config, "status")[1]
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    later = datetime.now(UTC) + timedelta(days=settings.schedule.keep_days + 1)
    pruned = housekeeping_job(settings, engine, clock=lambda: later, stop=threading.Event())
    assert pruned.details["pruned_webhook_deliveries"] == 1
    assert "1 finished webhook deliveries older than 365 days" in pruned.summary
    assert WebhookOutbox(engine).rows() == []
    assert receiver.events[0].data["previous_status"] == "active"
    receiver.down()


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_a_csv_import_writes_one_event_per_subscriber_it_adds_or_moves(
        tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bulk import writes a chunk in a few statements: its rows still tell the webhooks, in the same transaction."""
    signing = new_secret()
    monkeypatch.setenv(SECRET_ENV, signing)
    receiver = Receiver(signing)  # down: the events wait in the outbox
    config = webhook_config(tmp_path, sink, receiver)
    assert run(config, "subscribers", "add", "left@example.org")[0] == 0
    assert run(config, "subscribers", "remove", "left@example.org")[0] == 0
    rows = tmp_path / "readers.csv"
    rows.write_text("email,topics\nnew1@example.org,agents\nnew2@example.org,retrieval\nnot-an-address,agents\n"
                    "left@example.org,agents\n", encoding="utf-8")
    code, output = run(config, "subscribers", "import", str(rows), "--force")
    assert code != 0 or "not-an-address" in output, output
    listed = json.loads(run(config, "webhooks", "list", "--state", "pending", "--json")[1])
    events = Counter((d["type"], d["subject"]) for d in listed["deliveries"])
    created = [subject for (kind, subject) in events if kind == "subscriber.created"]
    assert len(created) == 3, events  # left@ first, then the two new rows of the import
    assert sum(n for (kind, _), n in events.items() if kind == "subscriber.resubscribed") == 1, events
    assert all(n == 1 for n in events.values()), events
