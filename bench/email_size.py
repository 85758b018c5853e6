"""Size of the HTML email and the share of it spent in style attributes, for 1, 3 and 6 topics × 10 papers.

Why: Gmail clips an HTML part above ~102 KB, hiding the end of the email (the unsubscribe link with it).
Inline styles repeated on every element once took 45% of the largest edition; the design budget is style
attributes at or under 25% of the HTML, and the production default (6 topics × 10 papers, 600-character
abstracts) under 80 KB with every paper in it.

How: the edition of the bundled feed snapshots (examples/offline.toml, 6 topics) with the production
defaults (10 papers per topic, 600-character abstracts, budget 100,000 bytes), rendered for readers of the
first 1, 3 and 6 topics, personalised for one reader. Bytes are UTF-8 of the personalised HTML part; style
share is the bytes of ` style="…"` attributes over all bytes.

    python bench/email_size.py
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.design_support import (  # noqa: E402
    offline_edition,
    offline_settings_in,
    personalised,
    render,
    topic_selection,
)

STYLE_ATTRIBUTE = re.compile(r'\sstyle=("[^"]*"|\'[^\']*\')')


def main() -> int:
    os.environ.setdefault("NEWSLETTER_SECRET", "bench-secret-0123456789abcdef")
    settings = offline_settings_in(Path(tempfile.mkdtemp(prefix="bench-size-")), max_papers_per_topic=10,
                                   abstract_chars=600)
    edition = offline_edition(settings)
    print("| topics × papers | papers in the email | HTML bytes | style attributes | share | render |")
    print("|---|---:|---:|---:|---:|---:|")
    worst = 0.0
    for topics in (1, 3, 6):
        selection = topic_selection(settings, edition, topics)
        started = time.perf_counter()
        variant = render(settings, selection)
        seconds = time.perf_counter() - started
        html_part, _ = personalised(settings, edition, variant)
        size = len(html_part.encode("utf-8"))
        styles = sum(len(m.group(0).encode("utf-8")) for m in STYLE_ATTRIBUTE.finditer(html_part))
        worst = max(worst, styles / size)
        print(f"| {topics} × 10 | {len(variant.paper_ids)} of {selection.paper_count} | {size:,} | {styles:,} | "
              f"{styles / size:.1%} | {seconds * 1000:.0f} ms |")
    return 0 if worst <= 0.25 else 1


if __name__ == "__main__":
    raise SystemExit(main())
