"""Benchmark of `newsletter fetch` of one very large arXiv RSS listing: wall time, CPU time and peak RSS.

Why: issue 30 — a 100,000-item arXiv RSS listing (192 MiB) took 105 s and 795 MB to fetch; the target is
<= 30 s and <= 400 MB peak, memory bounded by the document size limit rather than by the number of items.

How: ``bench/ingest.py``'s generator writes an rss.arxiv.org listing of ``--entries`` items (real item shape,
recombined real abstracts); a config with that file as its one ``arxiv-rss`` source, the three test topics and
``[fetch] max_bytes`` raised to hold it; then one fresh ``python -m newsletter fetch`` process (fetch, parse,
store, topic-match: what an operator runs), timed from outside with ``os.wait4`` (that process's own CPU
time and ``ru_maxrss``) into a new SQLite file. ``--baseline TREE`` first runs the same with the code of
another checkout (e.g. a ``git worktree`` of main before issue 30), in the same run.

    python bench/fetch.py                          # 100,000 items
    python bench/fetch.py --baseline /tmp/main-tree
    python bench/fetch.py --parse-only --baseline /tmp/main-tree   # parse_feed alone, in its own process
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import write_config  # noqa: E402

BUILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("bench_ingest", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["bench_ingest"] = module
spec.loader.exec_module(module)
open(sys.argv[3], "wb").write(module.build_feed(int(sys.argv[2]), 0))
"""


def _build_feed(entries: int, path: Path) -> None:
    """Write the listing from another process: a child started from a process that held it would inherit that
    process's peak in its own ``ru_maxrss`` (Linux keeps the high-water mark across exec)."""
    subprocess.run([sys.executable, "-c", BUILD, str(ROOT / "bench" / "ingest.py"), str(entries), str(path)],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


PARSE_ONLY = """
import sys
from newsletter.sources.parsing import parse_feed
data = open(sys.argv[1], "rb").read()
parsed = parse_feed("arxiv-rss", data, source="cs-ai")
print(f"parsed {len(parsed.papers)} papers, {parsed.skipped} skipped")
"""


def run(tree: Path, folder: Path, feed: Path, label: str, *, parse_only: bool = False) -> None:
    folder.mkdir()
    shutil.copyfile(feed, folder / "feed.xml")
    config = write_config(folder, [("cs-ai", "arxiv-rss", "feed.xml")],
                          extra=f"max_bytes = {feed.stat().st_size + 1_000_000}\n")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = ([sys.executable, "-c", PARSE_ONLY, str(folder / "feed.xml")] if parse_only else
               [sys.executable, "-m", "newsletter", "--config", str(config), "fetch"])
    with (folder / "out.txt").open("wb") as out, (folder / "err.txt").open("wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=folder)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{label}: fetch failed: {(folder / 'err.txt').read_text(errors='replace')[-800:]}")
    cpu = usage.ru_utime + usage.ru_stime
    print(f"| {label} | {wall:.1f} | {cpu:.1f} | {usage.ru_maxrss / 1024:.0f} |", flush=True)
    print("  " + " ".join((folder / "out.txt").read_text(errors="replace").split())[:300], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--baseline", type=Path, metavar="TREE", help="a checkout of the old code to run first")
    parser.add_argument("--parse-only", action="store_true",
                        help="time only reading the file and parse_feed (no store, no topic matching)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        feed = Path(scratch) / "listing.xml"
        _build_feed(options.entries, feed)
        load = os.getloadavg()
        print(f"{options.entries:,} items, {feed.stat().st_size / 2**20:.1f} MiB; load average before {load[0]:.2f} "
              f"{load[1]:.2f} {load[2]:.2f}")
        print("| code | wall s | CPU s | peak RSS MiB |")
        print("| --- | --: | --: | --: |")
        if options.baseline is not None:
            run(options.baseline, Path(scratch) / "baseline", feed, "baseline", parse_only=options.parse_only)
        run(ROOT, Path(scratch) / "tree", feed, "this tree", parse_only=options.parse_only)
    load = os.getloadavg()
    print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
