"""The classifier and processor on real mail: flufl.bounce's bounce corpus, feedback-loop reports,
auto-replies, a reader's reply, malformed MIME, mailto unsubscribes and forged VERP addresses."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.delivery.verp import BadToken, sign_token, token_in, verify_token
from newsletter.inbound.classify import InboundAddresses, classify
from newsletter.storage.inbound import InboundLog
from subscribers.evidence import EvidenceStore
from subscribers.tokens import Keyring, TokenSigner
from tests.inbound_support import DOMAIN, INBOUND_FIXTURES, NOW, SECRET, bounce_corpus, dsn, make_inbound

ADDRESSES = InboundAddresses(domain=DOMAIN)




def test_verp_tokens_verify_and_refuse_tampering() -> None:
    keyring = Keyring.parse(SECRET)
    token = sign_token(keyring, edition_id=12, subscriber_id=345)
    assert token.startswith("k1-12-345-")
    assert token == token.lower()
    assert verify_token(keyring, token.upper()).subscriber_id == 345  # a mail system that upper-cases
    rotated = Keyring.parse("k2:another-secret-0123456789," + SECRET)
    assert verify_token(rotated, token).edition_id == 12  # an old key still verifies
    for forged in (token.replace("-345-", "-346-"), token[:-1] + ("a" if token[-1] != "a" else "b"), "k1-1-2-x"):
        with pytest.raises(BadToken):
            verify_token(keyring, forged)
    assert token_in(f"<Bounces+{token}@Bounces.Example.org>", local_part="bounces", domain=DOMAIN) == token
    assert token_in(f"bounces+{token}@elsewhere.org", local_part="bounces", domain=DOMAIN) is None


def test_every_corpus_bounce_is_processed_and_hard_bounces_attributed_by_verp(tmp_path: Path) -> None:
    samples = sorted(bounce_corpus().glob("*.txt"))
    assert len(samples) >= 110
    inbound = make_inbound(f"sqlite:///{tmp_path / 'inbound.db'}")
    bystander = inbound.add("bystander@example.org")
    kinds: dict[str, int] = {}
    for number, sample in enumerate(samples):
        reader = inbound.add(f"reader{number}@example.net")
        outcome = inbound.processor.handle(sample.read_bytes(), recipients=[inbound.verp(reader)], door="smtp")
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
        status = inbound.subscribers.get(reader).status  # type: ignore[union-attr]
        if outcome.kind == "hard-bounce":
            assert (outcome.outcome, status) == ("applied", "bounced"), sample.name
        else:
            assert status == "active", sample.name
            assert outcome.outcome in ("ignored", "applied"), sample.name  # applied: a soft bounce, counted once
    assert inbound.subscribers.get(bystander).status == "active"  # type: ignore[union-attr]
    assert kinds.get("unparseable", 0) == 0
    assert kinds["hard-bounce"] >= 95, kinds  # 98 of 117 today; docs/inbound.md states the share


NON_BOUNCES = ["auto-reply-rfc3834.eml", "out-of-office-exchange.eml", "vacation-precedence.eml", "reader-reply.eml",
               "malformed-mime.eml"]


def test_non_bounces_never_change_a_reader(database_url: str) -> None:
    inbound = make_inbound(database_url)
    reader = inbound.add("ada@example.net")
    before = inbound.statuses()
    for name in NON_BOUNCES:
        token = inbound.verp(reader).partition("+")[2].partition("@")[0]
        raw = (INBOUND_FIXTURES / name).read_bytes().replace(b"REPLACE", token.encode())
        outcome = inbound.processor.handle(raw, recipients=[inbound.verp(reader)], door="smtp")
        assert outcome.outcome == "ignored", (name, outcome)
    garbage = inbound.processor.handle((INBOUND_FIXTURES / "garbage.bin").read_bytes(),
                                       recipients=[inbound.verp(reader)], door="smtp")
    assert garbage.outcome == "quarantined"
    assert inbound.statuses() == before
    log = InboundLog(inbound.processor.engine)
    assert log.counts() == {"ignored": len(NON_BOUNCES), "quarantined": 1}
    (kept,) = log.recent(outcome="quarantined")
    assert log.quarantined_raw(kept.id) == (INBOUND_FIXTURES / "garbage.bin").read_bytes()


def test_arf_complaints_make_the_reader_complained_and_suppressed(database_url: str) -> None:
    inbound = make_inbound(database_url)
    yahoo = inbound.add("yahoo-reader@example.com")
    hotmail = inbound.add("hotmail-reader@example.com")
    other = inbound.add("other@example.com")
    token = inbound.verp(yahoo).partition("+")[2].partition("@")[0]
    cfl = (INBOUND_FIXTURES / "arf-yahoo.eml").read_bytes().replace(b"REPLACE", token.encode())
    outcome = inbound.processor.handle(cfl.replace(b"MESSAGEID", b"<x@example.org>"), recipients=[], door="imap")
    assert (outcome.kind, outcome.outcome, outcome.actions) == ("complaint", "applied", ("complained",))
    # a report that only names a reader (no token, no Message-ID of ours) is anyone's to write: it changes nothing
    jmrp = (INBOUND_FIXTURES / "arf-jmrp.eml").read_bytes().replace(b"RECIPIENT", b"hotmail-reader@example.com")
    outcome = inbound.processor.handle(jmrp.replace(b"MESSAGEID", b"<y@example.org>"), recipients=[], door="imap")
    assert (outcome.outcome, outcome.actions) == ("unattributed", ())
    assert inbound.statuses() == {"yahoo-reader@example.com": "complained", "hotmail-reader@example.com": "active",
                                  "other@example.com": "active"}
    assert inbound.subscribers.suppression("yahoo-reader@example.com").reason == "complained"  # type: ignore[union-attr]
    (event,) = EvidenceStore(inbound.processor.engine).events(yahoo)
    assert (event.kind, event.action, event.attributed_by) == ("complaint", "complained", "verp")
    inbound.subscribers.delete_personal_data(yahoo, now=NOW)  # erasure takes the evidence with it
    assert EvidenceStore(inbound.processor.engine).events(yahoo) == []
    assert other
    assert hotmail


def test_mailto_unsubscribe_by_subject_or_local_part(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'u.db'}")
    first, second, third = (inbound.add(f"{n}@example.net") for n in ("first", "second", "third"))
    signer = TokenSigner(inbound.keyring)
    by_subject = (f"From: first@example.net\r\nTo: unsubscribe@{DOMAIN}\r\nMessage-ID: <u1@example.net>\r\n"
                  f"Subject: unsubscribe {signer.sign('unsubscribe', first)}\r\n\r\n").encode()
    outcome = inbound.processor.handle(by_subject, recipients=[f"unsubscribe@{DOMAIN}"], door="smtp")
    assert outcome.actions == ("unsubscribed",)
    token = signer.sign("unsubscribe", second)
    by_local_part = b"From: second@example.net\r\nTo: x\r\nSubject: stop\r\n\r\nplease\r\n"
    outcome = inbound.processor.handle(by_local_part, recipients=[f"unsubscribe+{token}@{DOMAIN}"], door="smtp")
    assert outcome.actions == ("unsubscribed",)
    forged = (f"From: x@example.net\r\nTo: unsubscribe@{DOMAIN}\r\n"
              f"Subject: unsubscribe {signer.sign('manage', third)}\r\n\r\n").encode()  # a manage token is no good
    assert inbound.processor.handle(forged, recipients=[f"unsubscribe@{DOMAIN}"], door="smtp").outcome == "forged"
    assert inbound.statuses() == {"first@example.net": "unsubscribed", "second@example.net": "unsubscribed",
                                  "third@example.net": "active"}
    assert inbound.subscribers.suppression("first@example.net").reason == "unsubscribed"  # type: ignore[union-attr]


def test_forged_or_tampered_verp_is_ignored_and_counted(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'f.db'}")
    victim = inbound.add("victim@example.net")
    tampered = inbound.verp(victim + 1).replace(f"-{victim + 1}-", f"-{victim}-")
    foreign = Keyring.parse("k1:someone-elses-secret-012345")
    guessed = f"bounces+{sign_token(foreign, edition_id=1, subscriber_id=victim)}@{DOMAIN}"
    for number, address in enumerate((tampered, guessed)):
        raw = dsn(to=address, final_recipient="victim@example.net", status="5.1.1", message_id=f"<f{number}@x>")
        assert inbound.processor.handle(raw, recipients=[address], door="smtp").outcome == "forged"
    assert inbound.statuses() == {"victim@example.net": "active"}
    assert InboundLog(inbound.processor.engine).counts() == {"forged": 2}


def test_soft_bounces_count_against_the_threshold_and_hard_bounces_act_once(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 's.db'}", soft_bounce_limit=3, soft_bounce_days=30.0)
    soft, hard = inbound.add("soft@example.net"), inbound.add("hard@example.net")
    days = [0, 40, 45]  # the first falls out of the 30-day window before the third arrives
    for number, day in enumerate(days):
        inbound.processor.clock = lambda day=day: NOW + timedelta(days=day)  # type: ignore[misc]
        raw = dsn(to=inbound.verp(soft), final_recipient="soft@example.net", status="4.2.2",
                  message_id=f"<s{number}@x>")
        assert inbound.processor.handle(raw, recipients=[inbound.verp(soft)], door="smtp").actions == ("counted",)
    inbound.processor.clock = lambda: NOW + timedelta(days=50)  # type: ignore[misc]
    raw = dsn(to=inbound.verp(soft), final_recipient="soft@example.net", status="4.2.2", message_id="<s9@x>")
    assert inbound.processor.handle(raw, recipients=[inbound.verp(soft)], door="smtp").actions == ("bounced",)
    for number in range(2):
        raw = dsn(to=inbound.verp(hard), final_recipient="hard@example.net", status="5.1.1",
                  message_id=f"<h{number}@x>")
        outcome = inbound.processor.handle(raw, recipients=[inbound.verp(hard)], door="smtp")
        assert outcome.actions == (("bounced",) if number == 0 else ("none",))
    again = inbound.processor.handle(raw, recipients=[inbound.verp(hard)], door="smtp")  # the same message again
    assert again.outcome == "duplicate"
    assert inbound.statuses() == {"soft@example.net": "bounced", "hard@example.net": "bounced"}
    events = EvidenceStore(inbound.processor.engine).events(hard)
    assert [(e.kind, e.action, e.status, e.message_id) for e in events] == [
        ("hard-bounce", "bounced", "5.1.1", "<orig@example.org>"),
        ("hard-bounce", "none", "5.1.1", "<orig@example.org>"),
    ]
    assert "Recipient address rejected" in events[0].diagnostic


def test_without_a_signed_claim_a_dsn_naming_a_reader_changes_nothing(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'r.db'}")
    inbound.add("known@example.net")
    raw = dsn(to="papers@example.org", final_recipient="Known@Example.net", status="5.1.1")
    assert inbound.processor.handle(raw, recipients=["papers@example.org"], door="imap").outcome == "unattributed"
    stranger = dsn(to="papers@example.org", final_recipient="stranger@example.net", status="5.1.1",
                   message_id="<other@x>")
    assert inbound.processor.handle(stranger, recipients=[], door="imap").outcome == "unattributed"
    assert inbound.statuses() == {"known@example.net": "active"}
    assert classify(raw, addresses=ADDRESSES).failures[0].status == "5.1.1"
