"""`newsletter preview` as an operator runs it: files written, paths and size printed, nothing recorded."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.editions.build import build_edition
from newsletter.storage import db
from subscribers.store import SubscriberStore
from tests.conftest import fixture_path, write_config
from tests.email_support import FIXTURE_SOURCES, POSTAL, SECRET, stores
from tests.support import run


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    path = write_config(tmp_path, FIXTURE_SOURCES, extra=f'[email]\npostal_address = "{POSTAL}"\n')
    assert run(path, "fetch")[0] == 0
    return path


def test_preview_writes_the_html_text_and_eml_and_records_nothing(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run(config, "preview", "--topics", "agents,reasoning", "--out", str(out))
    assert code == 0, output
    today = datetime.now(UTC).date().isoformat()
    stem = out / f"daily-{today}-agents-reasoning"
    lines = output.splitlines()
    assert lines[:3] == [f"{stem}.html", f"{stem}.txt", f"{stem}.eml"]
    size = len(Path(f"{stem}.html").read_bytes())
    count = re.fullmatch(rf"HTML size: {size:,} bytes; (\d+) papers; subject: .+ and (\d+) more", lines[3])
    assert count is not None, lines[3]
    assert int(count[2]) in (int(count[1]) - 1, int(count[1]) - 2)  # one or two titles, then the rest
    message = email.message_from_bytes(Path(f"{stem}.eml").read_bytes(), policy=email.policy.default)
    assert message["To"] == "Reader <reader@example.invalid>"
    html_body = message.get_body(("html",))
    assert html_body is not None
    sent_html = html_body.get_content().replace("\r\n", "\n").rstrip("\n")
    assert sent_html == Path(f"{stem}.html").read_text(encoding="utf-8")
    assert "Hi Reader," in Path(f"{stem}.txt").read_text(encoding="utf-8")
    settings = load_settings(config)
    _, editions = stores(settings)
    with editions.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(db.sent_papers)).scalar_one() == 0
    # a preview never freezes the edition: nothing is stored, a later fetch still lands in it
    assert editions.get_by_slug(f"daily-{today}") is None


def test_preview_for_a_subscriber_leaves_out_what_they_already_received(config: Path, tmp_path: Path) -> None:
    settings = load_settings(config)
    store, editions = stores(settings)
    ada = SubscriberStore(store.engine).add("ada@example.org", name="Ada", topics=["medical"],
                                            now=datetime.now(UTC))
    out = tmp_path / "out"
    code, output = run(config, "preview", "--subscriber", "ADA@example.org", "--out", str(out))
    assert code == 0, output
    first = output.splitlines()[0]
    assert first.endswith("-ada-example-org.html")
    edition = build_edition(settings, store, editions, frequency="daily", now=datetime.now(UTC))  # as a send does
    medical = [e.paper_id for e in edition.topic_map["medical"].entries]
    editions.record_sent(edition.id, {ada.id: medical})
    code, output = run(config, "preview", "--subscriber", "ada@example.org", "--out", str(out))
    assert code == 0
    assert output == f"{edition.slug}: no email (nothing new in these topics: no email)\n"


def test_preview_errors_are_one_line(config: Path) -> None:
    code, output = run(config, "preview", "--topics", "agents,nope,wat")
    assert code == 1
    assert output == "Error: unknown topics nope, wat; valid topics: agents, reasoning, medical\n"
    code, output = run(config, "preview", "--subscriber", "nobody@example.org")
    assert (code, output) == (1, "Error: no subscriber 'nobody@example.org'\n")


def test_preview_of_an_empty_edition_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    saturday = str(fixture_path("arxiv_rss/allnewsai_rss_cs.CL_weekend_empty_2026-08-01.xml"))
    config = write_config(tmp_path, [("saturday", "arxiv-rss", saturday)])
    assert run(config, "fetch")[0] == 0
    code, output = run(config, "preview", "--frequency", "weekly", "--out", str(tmp_path / "out"))
    assert code == 0
    assert output.startswith(f"weekly-{datetime.now(UTC).date().isoformat()}: no email (the edition is empty: "
                             "no new papers since ")
    assert not (tmp_path / "out").exists()


def test_preview_without_a_signing_key_is_a_config_error(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET")
    code, output = run(config, "preview", "--topics", "agents")
    assert code == 1
    assert output.startswith("Error: no signing key: set the environment variable NEWSLETTER_SECRET")
