"""Issue 26, item 7: `subscribers export` → `subscribers import` keeps every reader's status and consent
record (when, where, how), suppression and mail-back evidence — into a fresh database and into the same one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.storage.db import open_database
from subscribers.evidence import EvidenceStore
from subscribers.store import SubscriberStore
from tests.conftest import write_config
from tests.support import subscriber_snapshot

SECRET = "k1:consent-test-secret-0123456789"
T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _config(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    folder.mkdir(exist_ok=True)
    return write_config(folder, [("feed", "arxiv-rss", "feed.xml")])


def _store(config: Path) -> SubscriberStore:
    return SubscriberStore(open_database(load_settings(config).newsletter.database_url))


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


def _a_list_with_history(config: Path) -> None:
    """Readers as a month leaves them: confirmed sign-ups from the web, unconfirmed ones, operator adds,
    unsubscribes and a hard bounce with its evidence."""
    store = _store(config)
    for i in range(4):  # web sign-ups, confirmed from another address
        result = store.subscribe(f"web{i}@example.org", topics=["agents"], frequency="daily",
                                 ip=f"198.51.100.{i}", now=T0 + timedelta(hours=i))
        assert result.subscriber is not None
        store.confirm(result.subscriber.id, ip=f"203.0.113.{i}", now=T0 + timedelta(hours=i, minutes=5))
    for i in range(3):  # never confirmed
        store.subscribe(f"pending{i}@example.org", topics=["medical"], frequency="weekly", ip="192.0.2.7",
                        now=T0 + timedelta(days=1, hours=i))
    for i in range(3):
        store.add(f"cli{i}@example.org", name=f"Cli {i}", topics=["reasoning"], now=T0 + timedelta(days=2))
    store.unsubscribe(store.require("web0@example.org").id, now=T0 + timedelta(days=3))
    store.unsubscribe(store.require("cli0@example.org").id, now=T0 + timedelta(days=3, hours=1))
    bounced = store.require("web1@example.org")
    with store.engine.begin() as connection:
        EvidenceStore(store.engine).apply(connection, subscriber_id=bounced.id, kind="hard-bounce",
                                          now=T0 + timedelta(days=4), status="5.1.1",
                                          diagnostic="smtp; 550 5.1.1 no such user",
                                          message_id="<abc@example.org>")


def _snapshot(config: Path) -> dict[str, tuple[object, ...]]:
    store = _store(config)
    return subscriber_snapshot(store)


def test_export_then_import_into_a_fresh_database_restores_status_consent_and_evidence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _config(tmp_path / "old", monkeypatch)
    _a_list_with_history(old)
    before = _snapshot(old)
    assert [v[0] for v in before.values()].count("active") == 4
    export = tmp_path / "list.csv"
    assert _run(old, "subscribers", "export", str(export))[0] == 0
    fresh = _config(tmp_path / "fresh", monkeypatch)
    code, output = _run(fresh, "subscribers", "import", str(export), "--json")
    assert code == 0, output
    report = json.loads(output)
    assert _snapshot(fresh) == before
    assert len(report["added"]) == 10
    assert {status: len(emails) for status, emails in report["kept"].items()} == {
        "unsubscribed": 2, "bounced": 1, "pending": 3}
    # the readers who left get nothing: only the active ones are on the sending list
    assert sorted(s.email for s in _store(fresh).list_active()) == sorted(
        e for e, v in before.items() if v[0] == "active")


def test_export_then_import_into_the_same_database_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, monkeypatch)
    _a_list_with_history(config)
    before = _snapshot(config)
    export = tmp_path / "list.csv"
    assert _run(config, "subscribers", "export", str(export))[0] == 0
    code, output = _run(config, "subscribers", "import", str(export))
    assert code == 0, output
    assert "10 rows: 0 added, 0 updated, 10 unchanged, 0 not imported" in output
    assert "kept not active, as recorded: 3 pending, 2 unsubscribed, 1 bounced" in output
    assert _snapshot(config) == before


def test_a_plain_import_does_not_make_an_unconfirmed_sign_up_active_without_force(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, monkeypatch)
    store = _store(config)
    store.subscribe("signup@example.org", topics=["agents"], frequency="daily", ip="192.0.2.1", now=T0)
    plain = tmp_path / "plain.csv"
    plain.write_text("email,name\nsignup@example.org,Sign Up\n", encoding="utf-8")
    code, output = _run(config, "subscribers", "import", str(plain))
    assert code == 0, output
    assert store.require("signup@example.org").status == "pending"
    assert "kept not active, as recorded: 1 pending" in output
    assert _run(config, "subscribers", "import", str(plain), "--force")[0] == 0
    assert store.require("signup@example.org").status == "active"
