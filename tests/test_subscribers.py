"""The subscriber domain on real databases (SQLite, PostgreSQL): every operation, suppression, limits, tokens."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy.engine import Engine

from newsletter.storage.db import open_database
from subscribers.addresses import address_hash, valid_email
from subscribers.errors import (
    ExpiredTokenError,
    InvalidAddressError,
    KeyringError,
    NotFoundError,
    StatusError,
    SubscribersError,
    SuppressedError,
    TokenError,
    UnknownTopicError,
)
from subscribers.rate_limit_store import RateLimits
from subscribers.requests import confirm_request
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.conftest import ROOT

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)
TOPICS = ["agents", "reasoning", "medical"]


@pytest.fixture
def engine(database_url: str) -> Engine:
    """Every store test runs on SQLite and on the real PostgreSQL server (``tests/conftest.py``)."""
    return open_database(database_url)


@pytest.fixture
def store(engine: Engine) -> SubscriberStore:
    return SubscriberStore(engine, topics=TOPICS)


def test_the_subscriber_package_never_imports_newsletter() -> None:
    for path in sorted((ROOT / "subscribers").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "newsletter" or n.startswith("newsletter.") for n in names), path.name


# --- addresses -------------------------------------------------------------------------------------------


def test_addresses_are_checked_for_syntax_only_and_normalised() -> None:
    assert valid_email("  Ada@Example.ORG ") == "ada@example.org"
    assert valid_email("ü@Bücher.de") == "ü@bücher.de"
    assert valid_email("someone@no-such-domain-for-sure.example.com") == "someone@no-such-domain-for-sure.example.com"
    with pytest.raises(InvalidAddressError, match=re.escape(
            "not a valid email address: 'bad@' (there must be something after the @-sign)")):
        valid_email("bad@")
    with pytest.raises(InvalidAddressError, match=re.escape(
            "not a valid email address: 'a b@example.org' (the email address contains invalid characters before "
            "the @-sign: SPACE)")):
        valid_email("a b@example.org")
    with pytest.raises(InvalidAddressError, match="special-use or reserved name"):
        valid_email("reader@example.invalid")
    with pytest.raises(InvalidAddressError, match=re.escape("not a valid email address: '   ' (it is empty)")):
        valid_email("   ")


def test_the_suppression_hash_is_sha256_of_the_normal_form() -> None:
    assert address_hash("Ada@Example.org ") == address_hash("ada@example.org")
    assert re.fullmatch(r"[0-9a-f]{64}", address_hash("ada@example.org"))
    assert address_hash("ada@example.org") != address_hash("bob@example.org")


# --- operations ------------------------------------------------------------------------------------------


def test_active_ids_by_frequency_and_readers_by_id(store: SubscriberStore) -> None:
    ada = store.add("ada@example.org", topics=["agents"], frequency="daily", now=NOW)
    bob = store.add("bob@example.org", topics=["agents"], frequency="weekly", now=NOW)
    cy = store.add("cy@example.org", topics=["agents"], frequency="daily", now=NOW)
    store.unsubscribe(cy.id, now=NOW)
    assert store.active_id_list() == [ada.id, bob.id]
    assert store.active_id_list(frequency="daily") == [ada.id]
    assert [s.email for s in store.get_many([cy.id, ada.id, 10_000, ada.id])] == ["ada@example.org", "cy@example.org"]
    assert store.get_many([]) == []


def test_subscribe_is_pending_with_consent_time_and_ip_until_confirmed(store: SubscriberStore) -> None:
    result = store.subscribe(" Ada@Example.org", topics=["reasoning", "agents", "reasoning"], frequency="weekly",
                             ip="203.0.113.7", now=NOW)
    assert result.outcome == "pending"
    assert result.send_confirmation
    ada = result.subscriber
    assert ada is not None
    assert (ada.email, ada.status, ada.topics, ada.frequency, ada.source) == (
        "ada@example.org", "pending", ("reasoning", "agents"), "weekly", "web")
    assert (ada.consent_at, ada.consent_ip, ada.confirmed_at) == (NOW, "203.0.113.7", None)
    assert store.list_active() == []

    later = NOW + timedelta(hours=2)
    outcome, confirmed = store.confirm(ada.id, ip="198.51.100.2", now=later)
    assert outcome == "confirmed"
    assert (confirmed.status, confirmed.confirmed_at, confirmed.confirmed_ip) == ("active", later, "198.51.100.2")
    assert confirmed.consent_at == NOW
    assert store.list_active() == [confirmed]
    # confirming again changes nothing
    assert store.confirm(ada.id, ip="192.0.2.1", now=later + timedelta(hours=1)) == ("already-active", confirmed)


def test_subscribing_a_known_address_changes_nothing_and_sends_nothing(store: SubscriberStore) -> None:
    ada = store.add("ada@example.org", topics=["agents"], now=NOW)
    result = store.subscribe("ada@example.org", topics=["medical"], frequency="weekly", ip="192.0.2.9", now=NOW)
    assert (result.outcome, result.send_confirmation) == ("already-active", False)
    assert store.get(ada.id) == ada  # preferences change only through the manage link


def test_a_pending_request_asked_again_leaves_the_stored_request_as_it_was(store: SubscriberStore) -> None:
    """A second form post (maybe a stranger's) changes no stored row: its choices travel in its own outbox
    request, applied only by its own confirmation link (tests/test_web_signup.py)."""
    first = store.subscribe("ada@example.org", topics=["agents"], frequency="daily", ip="192.0.2.1", now=NOW)
    again = store.subscribe("ada@example.org", topics=["medical"], frequency="weekly", ip="192.0.2.2",
                            now=NOW + timedelta(minutes=5))
    assert again.outcome == "pending"
    assert again.subscriber is not None
    assert first.subscriber is not None
    assert again.subscriber == first.subscriber
    assert (again.subscriber.topics, again.subscriber.consent_ip) == (("agents",), "192.0.2.1")


def test_unknown_topics_and_no_topics_are_errors_naming_the_valid_ones(store: SubscriberStore) -> None:
    with pytest.raises(UnknownTopicError, match=re.escape(
            "unknown topics 'quantum', 'bio'; valid topics: agents, reasoning, medical")):
        store.subscribe("ada@example.org", topics=["agents", "quantum", "bio"], frequency="daily", ip=None, now=NOW)
    with pytest.raises(SubscribersError, match=re.escape("choose at least one topic: agents, reasoning, medical")):
        store.subscribe("ada@example.org", topics=[], frequency="daily", ip=None, now=NOW)
    with pytest.raises(SubscribersError, match="unknown frequency 'monthly'; expected one of: daily, weekly"):
        store.subscribe("ada@example.org", topics=["agents"], frequency="monthly", ip=None, now=NOW)
    with pytest.raises(UnknownTopicError, match=re.escape("unknown topic 'x'; valid topics: agents, reasoning")):
        store.add("bob@example.org", topics=["x"], now=NOW)
    assert store.list_all() == []


def test_preferences_change_topics_in_order_and_frequency(store: SubscriberStore) -> None:
    ada = store.add("ada@example.org", topics=["agents"], now=NOW)
    later = NOW + timedelta(days=1)
    after = store.update_preferences(ada.id, topics=["medical", "agents", "medical"], frequency="weekly", now=later)
    assert (after.topics, after.frequency, after.updated) == (("medical", "agents"), "weekly", later)
    with pytest.raises(UnknownTopicError):
        store.update_preferences(ada.id, topics=["nope"], frequency="daily", now=later)
    with pytest.raises(SubscribersError, match="choose at least one topic"):
        store.update_preferences(ada.id, topics=[], frequency="daily", now=later)
    store.mark_bounced(ada.id, now=later)
    with pytest.raises(StatusError, match=re.escape("ada@example.org is bounced; preferences cannot be changed")):
        store.update_preferences(ada.id, topics=["agents"], frequency="daily", now=later)
    with pytest.raises(NotFoundError):
        store.update_preferences(999, topics=["agents"], frequency="daily", now=later)


def test_unsubscribe_from_one_topic_then_from_all(store: SubscriberStore) -> None:
    ada = store.add("ada@example.org", topics=["agents", "medical"], now=NOW)
    assert store.unsubscribe(ada.id, topic="agents", now=NOW) is True
    assert store.get(ada.id).topics == ("medical",)  # type: ignore[union-attr]
    assert store.unsubscribe(ada.id, topic="agents", now=NOW) is False  # not one of theirs: nothing to do
    with pytest.raises(UnknownTopicError):
        store.unsubscribe(ada.id, topic="quantum", now=NOW)
    later = NOW + timedelta(hours=1)
    assert store.unsubscribe(ada.id, topic="medical", now=later) is True  # the last topic: unsubscribed
    gone = store.get(ada.id)
    assert gone is not None
    assert (gone.status, gone.unsubscribed_at, gone.topics) == ("unsubscribed", later, ("medical",))
    assert store.suppression("ADA@example.org").reason == "unsubscribed"  # type: ignore[union-attr]
    assert store.unsubscribe(ada.id, now=later) is False  # idempotent
    assert store.list_active() == []


def test_an_unsubscribed_reader_can_come_back_with_consent(store: SubscriberStore) -> None:
    ada = store.add("ada@example.org", topics=["agents"], now=NOW)
    store.unsubscribe(ada.id, now=NOW)
    # through the web form: a confirmation is due, and confirming lifts the suppression entry
    result = store.subscribe("ada@example.org", topics=["medical"], frequency="daily", ip="192.0.2.1", now=NOW)
    assert result.outcome == "unsubscribed"
    assert result.subscriber is not None
    assert result.subscriber.status == "unsubscribed"  # unchanged until the request is confirmed
    assert store.suppression("ada@example.org") is not None
    outcome, back = confirm_request(store, ada.id, topics=["medical"], frequency="daily", requested_at=NOW,
                                    requested_ip="192.0.2.1", ip="192.0.2.4", now=NOW)
    assert (outcome, back.status, back.topics, back.confirmed_ip) == ("confirmed", "active", ("medical",),
                                                                      "192.0.2.4")
    assert store.suppression("ada@example.org") is None
    # through their manage link
    store.unsubscribe(ada.id, now=NOW)
    back = store.resubscribe(ada.id, topics=["reasoning"], frequency="weekly", ip="192.0.2.3", now=NOW)
    assert (back.status, back.topics, back.frequency, back.consent_ip) == ("active", ("reasoning",), "weekly",
                                                                          "192.0.2.3")
    assert store.suppression("ada@example.org") is None


def test_bounces_and_complaints_suppress_the_address_for_good(store: SubscriberStore) -> None:
    ada = store.add("ada@example.org", topics=["agents"], now=NOW)
    bob = store.add("bob@example.org", topics=["agents"], now=NOW)
    assert store.mark_bounced(ada.id, now=NOW) is True
    assert store.mark_bounced(ada.id, now=NOW) is False
    assert store.mark_complained(bob.id, now=NOW) is True
    assert store.mark_complained(bob.id, now=NOW) is False
    assert [s.status for s in store.list_all()] == ["bounced", "complained"]
    assert store.suppression("ada@example.org").reason == "bounced"  # type: ignore[union-attr]
    assert store.suppression("bob@example.org").reason == "complained"  # type: ignore[union-attr]
    for email, subscriber_id in (("ada@example.org", ada.id), ("bob@example.org", bob.id)):
        result = store.subscribe(email, topics=["agents"], frequency="daily", ip=None, now=NOW)
        assert (result.outcome, result.send_confirmation) == ("suppressed", False)
        with pytest.raises(StatusError):
            store.resubscribe(subscriber_id, topics=["agents"], frequency="daily", ip=None, now=NOW)
    assert store.counts_by_status() == {"pending": 0, "active": 0, "unsubscribed": 0, "bounced": 1, "complained": 1}


def test_deleting_personal_data_keeps_only_a_suppression_entry(store: SubscriberStore, engine: Engine) -> None:
    ada = store.add("ada@example.org", name="Ada", topics=["agents"], consent_ip="192.0.2.1", now=NOW)
    deleted = store.delete_personal_data(ada.id, now=NOW)
    assert deleted == ada
    assert store.get(ada.id) is None
    assert store.list_all() == []
    suppression = store.suppression("ada@example.org")
    assert suppression is not None
    assert (suppression.reason, suppression.address_hash) == ("deleted", address_hash("ada@example.org"))
    with engine.connect() as connection:
        dump = "\n".join(str(row) for table in ("subscribers", "suppressions", "rate_events")
                         for row in connection.exec_driver_sql(f"SELECT * FROM {table}"))
    assert "ada" not in dump.lower()
    assert "192.0.2.1" not in dump
    # never re-subscribed from the web, nor added, unless forced
    assert store.subscribe("ada@example.org", topics=["agents"], frequency="daily", ip=None, now=NOW).outcome == \
        "suppressed"
    with pytest.raises(SuppressedError, match=re.escape(
            "ada@example.org is suppressed (deleted); not subscribed without --force")):
        store.add("ada@example.org", now=NOW)
    again = store.add("ada@example.org", now=NOW, force=True)
    assert again.id > ada.id  # ids are never reused: an old link cannot reach the new subscriber
    assert store.suppression("ada@example.org") is None
    with pytest.raises(NotFoundError):
        store.delete_personal_data(ada.id, now=NOW)


def test_unconfirmed_requests_expire_without_a_trace(store: SubscriberStore) -> None:
    store.subscribe("old@example.org", topics=["agents"], frequency="daily", ip=None, now=NOW - timedelta(days=8))
    store.subscribe("new@example.org", topics=["agents"], frequency="daily", ip=None, now=NOW)
    store.add("ada@example.org", now=NOW - timedelta(days=30))
    assert store.expire_pending(before=NOW - timedelta(days=7)) == 1
    assert [s.email for s in store.list_all()] == ["new@example.org", "ada@example.org"]
    assert store.suppression("old@example.org") is None


def test_listing_filters_by_status_frequency_and_topic(store: SubscriberStore) -> None:
    store.add("ada@example.org", topics=["agents"], now=NOW)
    store.add("bob@example.org", topics=["medical", "agents"], frequency="weekly", now=NOW)
    store.add("cy@example.org", topics=["medical"], status="pending", now=NOW)
    assert [s.email for s in store.list_all(topic="agents")] == ["ada@example.org", "bob@example.org"]
    assert [s.email for s in store.list_all(status="pending")] == ["cy@example.org"]
    assert [s.email for s in store.list_active(frequency="weekly")] == ["bob@example.org"]
    with pytest.raises(UnknownTopicError):
        store.list_all(topic="quantum")


# --- rate limits -----------------------------------------------------------------------------------------


def test_at_most_three_confirmations_per_address_per_week_kept_in_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    limits = RateLimits(open_database(url))
    assert [limits.allow_confirmation("Ada@example.org", now=NOW + timedelta(hours=i)) for i in range(5)] == [
        True, True, True, False, False]
    assert limits.allow_confirmation("bob@example.org", now=NOW)
    again = RateLimits(open_database(url))  # a restart forgets nothing
    assert not again.allow_confirmation("ada@example.org", now=NOW + timedelta(days=6))
    assert again.allow_confirmation("ada@example.org", now=NOW + timedelta(days=7, hours=1))
    assert again.count("confirmation", address_hash("ada@example.org"), window=timedelta(days=7),
                       now=NOW + timedelta(days=7, hours=1)) == 2  # +2 h and now


def test_subscribe_requests_per_ip_are_limited_per_hour(engine: Engine) -> None:
    limits = RateLimits(engine)
    assert [limits.allow_subscribe_from("192.0.2.1", limit=2, now=NOW) for _ in range(3)] == [True, True, False]
    assert limits.allow_subscribe_from("192.0.2.2", limit=2, now=NOW)
    assert limits.allow_subscribe_from("192.0.2.1", limit=2, now=NOW + timedelta(minutes=61))


# --- tokens ----------------------------------------------------------------------------------------------


def signer(value: str = "k1:first-secret-0123456789") -> TokenSigner:
    return TokenSigner(Keyring.parse(value))


def test_a_token_grants_one_purpose_for_one_subscriber() -> None:
    tokens = signer()
    manage = tokens.sign("manage", 42)
    assert manage.startswith("k1.")
    assert tokens.verify("manage", manage) == 42
    for other in ("confirm", "unsubscribe"):
        with pytest.raises(TokenError, match="invalid token"):
            tokens.verify(other, manage)  # type: ignore[arg-type]
    with pytest.raises(TokenError, match="unknown token purpose 'login'"):
        tokens.sign("login", 42)  # type: ignore[arg-type]


def test_tampered_and_foreign_tokens_are_refused() -> None:
    tokens = signer()
    good = tokens.sign("unsubscribe", 7)
    key_id, payload, *rest = good.split(".")  # key id, subscriber id, [timestamp,] signature
    signature = rest[-1]
    other_payload = signer().sign("unsubscribe", 8).split(".")[1]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    middle = ".".join([*rest[:-1], ""])
    for bad in (f"{key_id}.{other_payload}.{middle}{signature}",  # another subscriber's id
                f"{key_id}.{payload}.{middle}{flipped}",  # signature changed
                f"k9.{payload}.{middle}{signature}",  # unknown key id
                signer("k1:another-secret-0123456789").sign("unsubscribe", 7),  # signed with another key
                "", "k1.", "garbage"):
        with pytest.raises(TokenError):
            tokens.verify("unsubscribe", bad)


def test_confirm_tokens_expire_after_three_days_others_never(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = signer()
    start = 1_777_276_800
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: start)
    confirm, manage = tokens.sign("confirm", 5), tokens.sign("manage", 5)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: start + 3 * 86400 - 60)
    assert tokens.verify("confirm", confirm) == 5
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: start + 3 * 86400 + 60)
    with pytest.raises(ExpiredTokenError, match="this link has expired"):
        tokens.verify("confirm", confirm)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: start + 400 * 86400)
    assert tokens.verify("manage", manage) == 5


def test_rotated_keys_verify_old_links_until_the_old_key_is_removed() -> None:
    old = signer("k1:first-secret-0123456789")
    link = old.sign("manage", 3)
    rotated = signer("k2:second-secret-0123456789,k1:first-secret-0123456789")
    assert rotated.verify("manage", link) == 3
    fresh = rotated.sign("manage", 3)
    assert fresh.startswith("k2.")
    with pytest.raises(TokenError):
        old.verify("manage", fresh)
    retired = signer("k2:second-secret-0123456789")
    assert retired.verify("manage", fresh) == 3
    with pytest.raises(TokenError, match="invalid token"):
        retired.verify("manage", link)


def test_a_missing_or_weak_key_is_a_clear_error() -> None:
    with pytest.raises(KeyringError, match="no signing key: set the environment variable NEWSLETTER_SECRET"):
        Keyring.parse("")
    with pytest.raises(KeyringError, match="16 characters or more"):
        Keyring.parse("k1:short")
    assert Keyring.parse("a-plain-secret-of-some-length").current == "k0"
