"""SpamAssassin (Debian's `spamassassin`, local tests only: no DNS, no network) scores every demo message and
every preview message 0.0 (no rule that adds points hits): the largest edition, a non-ASCII newsletter name
and reader, and a production-like message with https links and a DKIM signature.

Skipped with the reason when /usr/bin/spamassassin is missing; fails then under CI and scripts/test, which installs it.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import mailbox
import os
import re
import subprocess
from pathlib import Path

import pytest

from newsletter.config import DkimSettings
from newsletter.delivery.dkim import DkimSigner
from newsletter.demo.run import run_demo
from newsletter.storage.db import open_database
from newsletter.storage.papers import PaperStore
from newsletter.usecases.preview import preview
from tests.design_support import offline_settings_in
from tests.email_support import NOW, fetch, fix_tokens
from tests.support import dkim_key_pair

pytestmark = [pytest.mark.slow, pytest.mark.needs("spamassassin")]
SPAMASSASSIN = Path("/usr/bin/spamassassin")
MAX_SCORE = 0.0


def scores(messages: list[bytes], home: Path) -> list[tuple[float, str]]:
    """(score, tests hit) per message, from one SpamAssassin run over an mbox (-L: local tests only)."""
    assert SPAMASSASSIN.exists(), "spamassassin is missing: apt-get install -y spamassassin (scripts/test does)"
    box_path = home / "messages.mbox"
    box = mailbox.mbox(box_path)
    for raw in messages:
        box.add(raw)
    box.flush()
    box.close()
    with box_path.open("rb") as source:
        result = subprocess.run([str(SPAMASSASSIN), "-L", "--mbox"], stdin=source, capture_output=True, check=True,
                                env={**os.environ, "HOME": str(home)}, timeout=600)
    found = []
    for message in mailbox.mbox(_write(home / "scored.mbox", result.stdout)):
        status = "".join(str(message["X-Spam-Status"]).split())  # folded after commas
        match = re.search(r"score=(-?[\d.]+).*tests=([A-Z0-9_,]*)", status)
        assert match, status
        found.append((float(match.group(1)), match.group(2)))
    return found


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_demo_and_preview_messages_score_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    demo = run_demo(folder=tmp_path / "demo", say=lambda line: None)
    messages = [path.read_bytes() for path in demo.received]
    assert len(messages) == 5

    settings = offline_settings_in(tmp_path, max_papers_per_topic=10)
    store = PaperStore(open_database(settings.newsletter.database_url))
    fetch(settings, store)
    unicode_name = dataclasses.replace(settings, newsletter=dataclasses.replace(
        settings.newsletter, name="Trendige Aufsätze — Überblick für Forschende"))
    slugs = [t.slug for t in settings.topics]
    for number, (config, topics) in enumerate([(settings, slugs), (settings, slugs[:1]), (unicode_name, slugs[:3])]):
        result = preview(config, store, out_dir=tmp_path / f"preview-{number}", now=NOW.replace(hour=9), topics=topics)
        assert result.eml_path is not None
        messages.append(result.eml_path.read_bytes())
    # production-like: https links (the offline example already uses them) and a DKIM signature
    key, _ = dkim_key_pair(tmp_path)
    signer = DkimSigner(DkimSettings(selector="news", domain="example.org", private_key_path=str(key)))
    messages.append(signer.sign(messages[-1]))
    parsed = email.message_from_bytes(messages[-1], policy=email.policy.default)
    assert parsed["DKIM-Signature"] is not None

    results = scores(messages, tmp_path)
    assert len(results) == len(messages) == 9
    too_high = [(score, tests) for score, tests in results if score > MAX_SCORE]
    assert not too_high, too_high
