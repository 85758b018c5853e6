"""Each paper's TL;DR is made once and stored with it (``paper_tldrs``): a second process reads it instead of
summarising again, and a changed abstract makes a new one. Real SQLite files, the real CLI."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.records.editions import EditionPaper
from newsletter.rendering.tldr import card_tldr
from newsletter.storage.db import open_database
from newsletter.usecases.tldrs import stored_tldrs
from tests.mailsink import MailSink
from tests.support import run as cli_run
from tests.test_send import add_subscribers, make_config, secret

__all__ = ["secret"]  # the signing key fixture, used by name

ABSTRACT = ("Large language models are increasingly used as agents. In this paper, we propose ToolPlan, a planner "
            "that learns when to call tools. On WebArena, ToolPlan improves the success rate by 12.4%.")


def test_a_sent_edition_stores_every_tldr_and_the_next_process_reads_them(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 4)
    code, output = cli_run(config, "send")
    assert code == 0, output
    engine = open_database(load_settings(config).newsletter.database_url)
    with engine.begin() as connection:
        stored = dict(connection.execute(sa.text("SELECT paper_id, tldr FROM paper_tldrs")).all())
        day = str(connection.execute(sa.text("SELECT date FROM editions")).scalar_one())[:10]  # the sent edition
        assert len(stored) >= 40  # every paper of the edition, not only those a reader got
        assert all(0 < len(t) <= 220 for t in stored.values())
        # what another process would find: a TL;DR it did not make (the same hash, other words)
        connection.execute(sa.text("UPDATE paper_tldrs SET tldr = 'Stored once: ' || paper_id || '.'"))
    out = tmp_path / "preview"
    code, output = cli_run(config, "preview", "--date", day, "--out", str(out))
    assert code == 0, output
    page = next(out.glob("*.html")).read_text(encoding="utf-8")
    summaries = re.findall(r'<p class="s">(?:<span class="ai">[^<]*</span> )?([^<]*)</p>', page)
    assert summaries
    assert all(re.fullmatch(r"Stored once: [\w./-]+\.", s) for s in summaries), summaries[:3]
    # a stored TL;DR of another text (the abstract changed since): made again from the paper's own text
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE paper_tldrs SET text_hash = 'stale'"))
    code, output = cli_run(config, "preview", "--date", day, "--out", str(out))
    assert code == 0, output
    page = next(out.glob("*.html")).read_text(encoding="utf-8")
    assert "Stored once:" not in page


def test_a_changed_abstract_replaces_the_stored_tldr(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'papers.db'}")
    paper = EditionPaper(paper_id="2604.00001", title="ToolPlan", abstract=ABSTRACT)
    first = stored_tldrs(engine, [paper])
    assert first == {"2604.00001": card_tldr(paper)}
    assert first["2604.00001"].startswith("We propose ToolPlan")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE paper_tldrs SET tldr = 'Made by the first process.'"))
    assert stored_tldrs(engine, [paper]) == {"2604.00001": "Made by the first process."}  # read, not made again
    changed = dataclasses.replace(paper, abstract="We introduce ToolPlan v2, which halves the number of tool calls.")
    assert stored_tldrs(engine, [changed]) == {"2604.00001": card_tldr(changed)}
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT tldr FROM paper_tldrs")).scalars().all()
    assert rows == [card_tldr(changed)]  # replaced, one row per paper
    assert stored_tldrs(engine, [changed], save=False) == {"2604.00001": card_tldr(changed)}
