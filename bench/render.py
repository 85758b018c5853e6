"""Benchmark of email production: 10,000 subscribers over 50 distinct topic sets, once per variant vs per recipient.

Why: Premailer costs tens of milliseconds per document, so rendering and inlining once per recipient caps a
send at a few dozen emails per second before any SMTP work. The issue's target: rendering once per distinct
variant and personalising by substitution is at least 30× the naive way, with exactly one inlining per variant.

How: the edition is built from the real feed snapshots of ``examples/offline.toml`` (99 papers) with its 6
topics plus 4 more (10 topics), through the real store. 50 distinct ordered topic sets of 1–4 topics are drawn
with a fixed seed; subscriber ``i`` gets set ``i % 50``. Then, in one process:

    optimised   group_by_variant (one selection per subscriber) → render_variant once per distinct selection
                (Jinja + Premailer + size budget) → per subscriber: recipient_links (two signed tokens) +
                RenderedVariant.personalise (HTML and text strings)
    message     build_message_bytes (stdlib MIME, the preview path) for a sample of recipients, reported
                apart: the sender builds MIME once per variant instead (newsletter/delivery/mime.py)
    naive       per recipient: select → render_variant (Jinja + Premailer) → recipient_links → personalise,
                measured on a sample (default 300 recipients) and extrapolated per email

Peak memory is ``ru_maxrss`` of this process, after the optimised run (before the naive one) and at the end.

    python bench/render.py                       # 10,000 subscribers, 50 sets, naive sample of 300
    python bench/render.py --naive-sample 100    # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from naive_message import build_message_bytes  # noqa: E402

from newsletter.config import load_settings  # noqa: E402
from newsletter.editions.build import build_edition  # noqa: E402
from newsletter.editions.selection import group_by_variant, select  # noqa: E402
from newsletter.rendering import render  # noqa: E402
from newsletter.rendering.links import Recipient, recipient_links, signer_from_settings  # noqa: E402
from newsletter.rendering.render import RenderedVariant, RenderEnvironment, render_variant  # noqa: E402
from newsletter.storage.db import open_database  # noqa: E402
from newsletter.storage.editions import EditionStore  # noqa: E402
from newsletter.storage.papers import PaperStore  # noqa: E402
from newsletter.usecases.fetch import fetch_sources  # noqa: E402

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)
TARGET_SPEEDUP = 30.0
EXTRA_TOPICS = '''
[[topics]]
slug = "wireless"
name = "Wireless networks"
description = "Wireless communication, 6G networks, MIMO, beamforming and edge computing."
keywords = ["6G", "MIMO", "wireless", "beamforming", "edge computing"]
categories = ["eess.SP", "cs.IT", "cs.NI"]

[[topics]]
slug = "robotics"
name = "Robotics"
description = "Robots, drones and embodied agents that perceive, plan and manipulate."
keywords = ["robot", "robotics", "drone", "manipulation", "embodied"]
categories = ["cs.RO"]

[[topics]]
slug = "hci"
name = "Human-AI interaction"
description = "How people use, design with and are supported by AI systems: user studies and interfaces."
keywords = ["human-AI", "user study", "participatory", "interaction", "decision-making"]
categories = ["cs.HC"]

[[topics]]
slug = "ai-policy"
name = "AI ethics and policy"
description = "Ethics, governance, regulation, privacy and copyright of AI systems."
keywords = ["ethics", "ethical", "policy", "governance", "copyright", "privacy"]
categories = ["cs.CY"]
'''


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def topic_sets(slugs: list[str], count: int, *, seed: int = 7) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    found: dict[tuple[str, ...], None] = {}
    while len(found) < count:
        found[tuple(rng.sample(slugs, rng.randint(1, 4)))] = None
    return list(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--sets", type=int, default=50, help="distinct ordered topic sets")
    parser.add_argument("--naive-sample", type=int, default=300, help="recipients rendered the naive way")
    parser.add_argument("--message-sample", type=int, default=2000, help="recipients given a full MIME message")
    parser.add_argument("--no-check", action="store_true", help="do not exit 1 when the target is missed")
    args = parser.parse_args()

    os.environ.setdefault("NEWSLETTER_SECRET", "bench-secret-0123456789abcdef")
    folder = Path(tempfile.mkdtemp(prefix="bench-render-"))
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    (folder / "bench.toml").write_text(text + EXTRA_TOPICS, encoding="utf-8")
    settings = load_settings(folder / "bench.toml")
    settings = dataclasses.replace(settings, email=dataclasses.replace(settings.email, max_papers_per_topic=10))
    engine = open_database(settings.newsletter.database_url)
    store, editions = PaperStore(engine), EditionStore(engine)
    asyncio.run(fetch_sources(settings, store, now=NOW))
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    slugs = [t.slug for t in settings.topics if t.slug in edition.topic_map]
    sets = topic_sets(slugs, args.sets)
    readers = [(i + 1, sets[i % len(sets)]) for i in range(args.subscribers)]
    names = {sid: f"Reader {sid}" for sid, _ in readers}
    signer = signer_from_settings(settings)
    environment = RenderEnvironment(settings)

    def recipient(sid: int) -> Recipient:
        return recipient_links(settings, signer, subscriber_id=sid, email=f"reader{sid}@example.org",
                               name=names[sid], edition_slug=edition.slug)

    # --- optimised: once per variant --------------------------------------------------------------------
    warm = select(edition, sets[0], max_per_topic=10)
    render_variant(warm, settings=settings, environment=environment)  # imports and caches warm for both ways
    render.stats.inline_calls = 0
    started = time.perf_counter()
    groups = group_by_variant(edition, readers, max_per_topic=settings.email.max_papers_per_topic)
    selected = time.perf_counter()
    variants: dict[int, RenderedVariant] = {}
    sizes: list[int] = []
    for group in groups:
        variant = render_variant(group.selection, settings=settings, environment=environment)
        sizes.append(variant.size_bytes)
        for sid in group.subscriber_ids:
            variants[sid] = variant
    rendered = time.perf_counter()
    produced = 0
    for sid, _ in readers:
        html_part, text_part = variants[sid].personalise(recipient(sid))
        produced += len(html_part) + len(text_part)
    finished = time.perf_counter()
    inline_calls = render.stats.inline_calls
    peak_optimised = peak_mib()

    sample = readers[: args.message_sample]
    message_started = time.perf_counter()
    message_bytes = sum(len(build_message_bytes(variants[sid], recipient(sid), settings=settings, date=NOW))
                        for sid, _ in sample)
    message_seconds = time.perf_counter() - message_started

    # --- naive: render + Premailer per recipient, on a sample --------------------------------------------
    naive_readers = readers[: args.naive_sample]
    naive_started = time.perf_counter()
    for sid, topics in naive_readers:
        own = render_variant(select(edition, topics, max_per_topic=settings.email.max_papers_per_topic),
                             settings=settings, environment=environment)
        html_part, text_part = own.personalise(recipient(sid))
        produced += len(html_part) + len(text_part)
    naive_seconds = time.perf_counter() - naive_started

    emails = len(readers)
    total = finished - started
    per_email = total / emails
    naive_per_email = naive_seconds / len(naive_readers)
    speedup = naive_per_email / per_email
    rows = [
        ("subscribers", f"{emails:,}", ""),
        ("distinct topic sets", f"{len(sets)}", ""),
        ("papers in the edition", f"{edition.paper_count}", ""),
        ("variants (distinct selections)", f"{len(groups)}", ""),
        ("Premailer inlining calls", f"{inline_calls}", ""),
        ("inlined HTML per variant, min / median / max", f"{min(sizes):,} / {sorted(sizes)[len(sizes) // 2]:,} / "
                                                          f"{max(sizes):,}", "bytes"),
        ("select (all subscribers)", f"{selected - started:.3f}", "s"),
        ("render + inline (all variants)", f"{rendered - selected:.3f}", "s"),
        ("links + personalise (all subscribers)", f"{finished - rendered:.3f}", "s"),
        ("**total, optimised**", f"{total:.3f}", "s"),
        ("**emails/s, optimised**", f"{emails / total:,.0f}", "emails/s"),
        (f"+ build_message_bytes, {len(sample):,} recipients", f"{len(sample) / message_seconds:,.0f}",
         "messages/s"),
        (f"naive, {len(naive_readers)} recipients measured", f"{naive_seconds:.3f}", "s"),
        ("**emails/s, naive**", f"{1 / naive_per_email:,.1f}", "emails/s"),
        (f"naive, extrapolated to {emails:,}", f"{naive_per_email * emails:.1f}", "s"),
        ("**speed-up**", f"{speedup:,.0f}×", f"(target ≥ {TARGET_SPEEDUP:.0f}×)"),
        ("peak RSS after the optimised run", f"{peak_optimised:.1f}", "MiB"),
        ("peak RSS at the end", f"{peak_mib():.1f}", "MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | unit |")
    print(f"|{'-' * (width + 2)}|------:|------|")
    for label, value, unit in rows:
        print(f"| {label:<{width}} | {value} | {unit} |")
    print(f"\n(output checksum {produced:,} characters, {message_bytes:,} message bytes)")
    ok = inline_calls == len(groups) and speedup >= TARGET_SPEEDUP
    if not ok:
        print(f"target missed: inline calls {inline_calls} vs variants {len(groups)}, speed-up {speedup:.1f}×",
              file=sys.stderr)
    return 0 if ok or args.no_check else 1


if __name__ == "__main__":
    sys.exit(main())
