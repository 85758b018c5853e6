"""Benchmark of the shapes feedparser is quadratic on, before and after the XML budget (issue 15).

Why: one RSS item with 50,000 attributes (490 KB) took feedparser 165 s, and one with 20,000 categories
(590 KB) 137 s; a few MB, far below the 50 MB size cap, would stall a fetch for hours. ``parse_feed`` now
trims elements past the budget of ``newsletter.sources.documents`` with lxml before feedparser sees them.
The target: each shape at 1 MB parses in under 5 s. Sizes are measured on the generated document.

How: each measurement is a fresh process (so one slow case cannot warm or starve the next), killed after
``--before-timeout`` seconds for the old path (plain ``feedparser.parse``, as ``parse_feed`` used to call
it), which at 1 MB would otherwise run for many minutes. The new path is ``parse_feed("arxiv-rss", ...)``.

    python bench/ingest.py --hostile              # 128 KB, 256 KB and 1 MB of each shape
    python bench/ingest_hostile.py --sizes 1000   # only 1 MB (sizes in KB)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0
SHAPES = ("attributes", "categories")


def _rss(item: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>cs.XX</title>'
        "<link>http://rss.arxiv.org/rss/cs.XX</link><description>bench</description>"
        f"{item}</channel></rss>\n"
    ).encode()


def build(shape: str, kilobytes: int) -> bytes:
    """One arXiv RSS item whose attributes (``a0="x" …``, 10 bytes each) or categories (~30 bytes each)
    fill ``kilobytes`` KB."""
    core = ("<title>A paper</title><link>https://arxiv.org/abs/2604.00001</link>"
            "<guid>oai:arXiv.org:2604.00001v1</guid><description>arXiv:2604.00001v1 Announce Type: new "
            "Abstract: Agents.</description>")
    if shape == "attributes":
        count = kilobytes * 1000 // 10
        return _rss(f"<item{''.join(f' a{i}=' + chr(34) + 'x' + chr(34) for i in range(count))}>{core}</item>")
    count = kilobytes * 1000 // 30
    return _rss(f"<item>{core}{''.join(f'<category>cs.X{i:07d}</category>' for i in range(count))}</item>")


_CHILD = """
import sys, time
data = open(sys.argv[2], "rb").read()
started = time.perf_counter()
if sys.argv[1] == "before":
    import feedparser
    parsed = feedparser.parse(data, resolve_relative_uris=False)
    entries = len(parsed.entries)
else:
    from newsletter.sources.parsing import parse_feed
    entries = len(parse_feed("arxiv-rss", data, source="bench").papers)
print(time.perf_counter() - started, entries)
"""


def measure(path: Path, mode: str, timeout: float) -> tuple[float | None, int]:
    """Parse seconds (None when killed at ``timeout``) and entries found, in a fresh process."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path)], capture_output=True, text=True,
                              timeout=timeout, check=True, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, 0
    seconds, entries = done.stdout.split()
    return float(seconds), int(entries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 1000], help="document sizes in KB")
    parser.add_argument("--before-timeout", type=float, default=60.0,
                        help="seconds after which the old path is killed (default 60)")
    parser.add_argument("--no-before", action="store_true", help="measure only the new path")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even when the target is missed")
    args = parser.parse_args(argv)
    print(f"{'shape':<11} {'size':>9}  {'before (feedparser)':>20}  {'after (parse_feed)':>19}  entries")
    met = True
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as folder:
        for shape in SHAPES:
            for kilobytes in args.sizes:
                path = Path(folder) / f"{shape}-{kilobytes}.xml"
                path.write_bytes(build(shape, kilobytes))
                size = f"{path.stat().st_size / 1e6:.2f} MB"
                before = "not run"
                if not args.no_before:
                    seconds, _ = measure(path, "before", args.before_timeout)
                    before = f"{seconds:.2f} s" if seconds is not None else f"> {args.before_timeout:g} s"
                started = time.perf_counter()
                after, entries = measure(path, "after", 10 * TARGET_SECONDS)
                wall = time.perf_counter() - started
                if after is None or (kilobytes >= 1000 and after >= TARGET_SECONDS):
                    met = False
                shown = f"{after:.2f} s" if after is not None else "> 50 s"
                print(f"{shape:<11} {size:>9}  {before:>20}  {shown:>19}  {entries} (process {wall:.1f} s)")
    print(f"target: each shape at 1 MB under {TARGET_SECONDS:g} s: {'met' if met else 'MISSED'}")
    return 0 if met or args.no_check else 1


if __name__ == "__main__":
    sys.exit(main())
