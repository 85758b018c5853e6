"""`newsletter subscribers …` as an operator uses it: CSV import with good and bad rows, export, add, remove."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.storage.db import open_database
from subscribers.store import SubscriberStore
from tests.conftest import write_config
from tests.mailsink import MailSink
from tests.support import run

SECRET = "k1:cli-test-secret-0123456789"

CSV = '''email,name,topics,frequency
ada@example.org,Ada Lovelace,reasoning;agents,weekly
bad-address@,Nobody,agents,daily
bob@example.org,Bob,agents;quantum,daily
"carol@example.org","Carol, the ""Third""",medical,
ADA@example.org,Ada again,agents,daily
dan@example.org,Dan,,

erin@example.org,Erin,medical,monthly
"frank@example.org","Frank
Multi-line",agents ; medical,daily
gina@example.org,Gina
'''

ERRORS = [
    "line 3: not a valid email address: 'bad-address@' (there must be something after the @-sign)",
    "line 4: unknown topic 'quantum'; valid topics: agents, reasoning, medical",
    "line 6: duplicate of line 2 (ada@example.org)",
    "line 7: dan@example.org is suppressed (unsubscribed); not imported (use --force to import it anyway)",
    "line 9: unknown frequency 'monthly'; expected one of: daily, weekly",
]


@pytest.fixture
def config(tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    return write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")],
                        extra=f"[delivery]\nport = {sink.port}\ntimeout_seconds = 5\n")


def store_of(config: Path) -> SubscriberStore:
    return SubscriberStore(open_database(load_settings(config).newsletter.database_url))


def unsubscribed_dan(config: Path) -> None:
    code, output = run(config, "subscribers", "add", "dan@example.org", "--topics", "medical")
    assert (code, output) == (0, "added dan@example.org (active; medical; daily)\n")
    code, output = run(config, "subscribers", "remove", "dan@example.org")
    assert (code, output) == (0, "unsubscribed dan@example.org\n")


def test_import_reports_every_bad_row_and_imports_only_the_good_ones(config: Path, tmp_path: Path) -> None:
    unsubscribed_dan(config)
    path = tmp_path / "list.csv"
    path.write_text(CSV, encoding="utf-8")
    code, output = run(config, "subscribers", "import", str(path))
    assert code == 1
    assert output.splitlines() == [
        "9 rows: 4 added, 0 updated, 0 unchanged, 5 not imported", *ERRORS, "Error: 5 of 9 rows were not imported"]
    rows = {s.email: (s.name, s.topics, s.frequency, s.status, s.source) for s in store_of(config).list_all()}
    assert rows == {
        "dan@example.org": ("", ("medical",), "daily", "unsubscribed", "cli"),
        "ada@example.org": ("Ada Lovelace", ("reasoning", "agents"), "weekly", "active", "import"),
        "carol@example.org": ('Carol, the "Third"', ("medical",), "daily", "active", "import"),
        "frank@example.org": ("Frank Multi-line", ("agents", "medical"), "daily", "active", "import"),
        "gina@example.org": ("Gina", ("agents", "reasoning", "medical"), "daily", "active", "import"),
    }
    # idempotent: the same file again changes nothing and reports the same rows
    code, output = run(config, "subscribers", "import", str(path), "--json")
    assert code == 1
    report = json.loads(output[: output.rindex("}") + 1])
    assert (report["added"], report["updated"], len(report["unchanged"])) == ([], [], 4)
    assert [f"line {e['line']}: {e['message']}" for e in report["errors"]] == ERRORS
    # --force imports the suppressed address (and lifts its suppression)
    code, output = run(config, "subscribers", "import", str(path), "--force")
    assert "0 added, 1 updated, 4 unchanged, 4 not imported" in output
    assert store_of(config).get_by_email("dan@example.org").status == "active"  # type: ignore[union-attr]
    assert store_of(config).suppression("dan@example.org") is None


def test_an_empty_cell_keeps_the_stored_value_and_a_dry_run_changes_nothing(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email,name,topics,frequency\nada@example.org,Ada,agents,weekly\n", encoding="utf-8")
    assert run(config, "subscribers", "import", str(path))[0] == 0
    path.write_text("email,topics\nada@example.org,medical\nnew@example.org,\n", encoding="utf-8")
    code, output = run(config, "subscribers", "import", str(path), "--dry-run")
    assert (code, output) == (0, "dry run, nothing changed: 2 rows: 1 added, 1 updated, 0 unchanged, 0 not imported\n")
    assert [s.email for s in store_of(config).list_all()] == ["ada@example.org"]
    assert run(config, "subscribers", "import", str(path))[0] == 0
    ada = store_of(config).get_by_email("ada@example.org")
    assert ada is not None
    assert (ada.name, ada.topics, ada.frequency) == ("Ada", ("medical",), "weekly")


def test_a_file_without_the_header_or_with_unknown_columns_is_refused(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("ada@example.org,Ada,agents,daily\n", encoding="utf-8")
    code, output = run(config, "subscribers", "import", str(path))
    assert (code, output) == (1, "Error: line 1: expected a header line email,name,topics,frequency (only email "
                                 "is required), found 'ada@example.org,Ada,agents,daily'\n")
    path.write_text("email,phone\n", encoding="utf-8")
    assert run(config, "subscribers", "import", str(path)) == (
        1, "Error: line 1: unknown column 'phone'; expected: email,name,topics,frequency\n")


def test_export_then_import_round_trips(config: Path, tmp_path: Path) -> None:
    run(config, "subscribers", "add", "ada@example.org", "--name", "=HYPERLINK(1)", "--topics", "medical,agents",
        "--frequency", "weekly")
    run(config, "subscribers", "add", "bob@example.org")
    out = tmp_path / "export.csv"
    code, output = run(config, "subscribers", "export", str(out))
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ("email,name,topics,frequency,status,source,consent_at,consent_ip,confirmed_at,confirmed_ip,"
                        "unsubscribed_at,created,updated,suppression,suppressed_at,evidence")
    assert lines[1].startswith("ada@example.org,'=HYPERLINK(1),medical;agents,weekly,active,cli,")
    code, output = run(config, "subscribers", "import", str(out))
    assert (code, output) == (0, "2 rows: 0 added, 0 updated, 2 unchanged, 0 not imported\n")
    assert run(config, "subscribers", "export", "--status", "pending")[1] == lines[0] + "\n"


def test_import_with_confirm_keeps_new_subscribers_pending_and_mails_them(config: Path, tmp_path: Path,
                                                                          sink: MailSink) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,name\nada@example.org,Ada\nbob@example.org,\n", encoding="utf-8")
    code, output = run(config, "subscribers", "import", str(path), "--confirm")
    assert (code, output) == (0, "2 rows: 2 added, 0 updated, 0 unchanged, 0 not imported\n"
                                 "2 of 2 confirmation emails sent\n")
    assert [s.status for s in store_of(config).list_all()] == ["pending", "pending"]
    assert sorted(sink.by_recipient()) == ["ada@example.org", "bob@example.org"]
    message = email.message_from_bytes(sink.by_recipient()["ada@example.org"][0].data, policy=email.policy.default)
    body = message.get_content()
    assert "Ada" not in body  # a name is typed by someone: it never goes into a confirmation email
    assert re.search(r"https://papers\.example\.org/confirm/k1\.\S+", body)


def test_add_list_show_and_remove(config: Path) -> None:
    assert run(config, "subscribers", "add", "Ada@Example.org", "--name", "Ada", "--topics", "reasoning,agents") == (
        0, "added ada@example.org (active; reasoning, agents; daily)\n")
    assert run(config, "subscribers", "add", "ada@example.org", "--frequency", "weekly") == (
        0, "updated ada@example.org (active; reasoning, agents; weekly)\n")
    assert run(config, "subscribers", "add", "x@example.org", "--topics", "quantum") == (
        1, "Error: unknown topic 'quantum'; valid topics: agents, reasoning, medical\n")
    assert run(config, "subscribers", "add", "not-an-address") == (
        1, "Error: not a valid email address: 'not-an-address' (an email address must have an @-sign)\n")
    _code, output = run(config, "subscribers", "list", "--json")
    listed = json.loads(output)
    assert listed["count"] == 1
    assert {k: listed["subscribers"][0][k] for k in ("email", "name", "status", "topics", "frequency", "source")} == {
        "email": "ada@example.org", "name": "Ada", "status": "active", "topics": ["reasoning", "agents"],
        "frequency": "weekly", "source": "cli"}
    table = run(config, "subscribers", "list")[1]
    assert re.search(r"\b1 subscriber *\n", table)
    assert "ada@example.o" in table
    assert run(config, "subscribers", "remove", "ada@example.org", "--topic", "agents") == (
        0, "ada@example.org: removed from agents; now ada@example.org (active; reasoning; weekly)\n")
    assert run(config, "subscribers", "remove", "ada@example.org") == (0, "unsubscribed ada@example.org\n")
    assert run(config, "subscribers", "remove", "ada@example.org")[1].startswith("ada@example.org: nothing to change")
    shown = json.loads(run(config, "subscribers", "show", "ada@example.org", "--json")[1])
    assert shown["subscriber"]["status"] == "unsubscribed"
    assert shown["suppressed"]["reason"] == "unsubscribed"
    assert run(config, "subscribers", "add", "ada@example.org") == (
        1, "Error: ada@example.org is suppressed (unsubscribed); not subscribed without --force\n")
    assert run(config, "subscribers", "remove", "ada@example.org", "--delete") == (
        0, "deleted the personal data of ada@example.org; kept a suppression entry\n")
    shown_lines = run(config, "subscribers", "show", "ada@example.org")[1].splitlines()
    assert shown_lines[0] == "ada@example.org: not on the list"
    assert re.fullmatch(r" +suppressed: deleted since \d{4}-\d\d-\d\d \d\d:\d\d UTC", shown_lines[1])
    assert run(config, "subscribers", "remove", "nobody@example.org") == (
        1, "Error: no subscriber 'nobody@example.org'\n")


def test_confirm_needs_the_signing_key(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET")
    code, output = run(config, "subscribers", "add", "ada@example.org", "--confirm")
    assert code == 1
    assert output.startswith("Error: no signing key: set the environment variable NEWSLETTER_SECRET")
    assert store_of(config).list_all() == []


def test_help_explains_the_commands() -> None:
    runner = CliRunner()
    assert "add, remove, list, show, import and export" in runner.invoke(cli, ["subscribers", "--help"]).output
    assert "email,name,topics,frequency" in runner.invoke(cli, ["subscribers", "import", "--help"]).output
    assert "one-click unsubscribe" in runner.invoke(cli, ["web", "--help"]).output
