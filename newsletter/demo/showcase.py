"""What makes the demo show itself off: scores that trend on old feeds, emails to open in a browser.

The bundled feeds are snapshots months old, so ages counted from today decay every trending score to
0.00. The demo counts ages from the feeds' own day instead (``[trending] as_of``): the newest publication
among the papers that can trend (those with Hugging Face upvotes or GitHub stars), which is the day the
Hugging Face Daily Papers snapshot was taken. A person would rather look at an email than at a Maildir
path, so every received message is also written as a ``.html`` file to open by its ``file://`` link.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import cast

from newsletter.records.papers import Paper


def feeds_day(papers: Sequence[Paper]) -> datetime | None:
    """The moment the snapshot was taken, as far as the papers tell (see the module docstring)."""
    trending = [p.published for p in papers if p.published is not None and (p.upvotes or p.github_stars)]
    dated = trending or [p.published for p in papers if p.published is not None]
    return max(dated) if dated else None


def with_as_of(config_text: str, moment: datetime) -> str:
    """The config with ``[trending] as_of`` set (added to an existing ``[trending]`` table, or as a new one)."""
    line = f'as_of = "{moment.isoformat()}"'
    if re.search(r"^\[trending\]\s*$", config_text, flags=re.MULTILINE):
        return re.sub(r"^\[trending\]\s*$", f"[trending]\n{line}", config_text, count=1, flags=re.MULTILINE)
    return config_text + f"\n[trending]\n{line}\n"


def write_html(messages: Sequence[Path], folder: Path) -> list[tuple[str, Path]]:
    """Write the HTML part of each stored message to ``folder/<recipient>.html``: (recipient, file) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    for path in messages:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("html",))
        if body is None:
            continue
        recipient = str(message["To"] or path.name)
        address = recipient.rpartition("<")[2].rstrip(">").strip() or path.name
        target = folder / (re.sub(r"[^A-Za-z0-9._-]", "_", address.replace("@", "-at-")) + ".html")
        target.write_text(str(cast(EmailMessage, body).get_content()), encoding="utf-8")
        written.append((address, target))
    return written
