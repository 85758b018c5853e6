"""Benchmark of `subscribers import` and `export` at 100,000 rows: wall time, CPU time and peak RSS.

Why: issue 30 — an import ran at ~1,600 rows/s (several statements per row); the target is 100,000 rows in
<= 10 s and <= 300 MB, and the export the same.

How: a CSV of ``--rows`` readers (email, name, topics, frequency) is written; each step is one fresh
``python -m newsletter`` process (what an operator runs), timed from outside with ``os.wait4`` (that
process's own CPU and ``ru_maxrss``):

1. ``import`` into a new database (every row added);
2. ``import`` of the same file again (every row unchanged);
3. ``export`` of the list;
4. ``import`` of that export into another new database (the consent-record path: status, consent, suppression).

``--baseline TREE`` runs steps 1 and 3 with the code of another checkout (e.g. a ``git worktree`` of main
before issue 30) on ``--baseline-rows`` rows, in the same run. ``--postgres`` uses scratch PostgreSQL
databases (127.0.0.1:5432, the tests' server) instead of SQLite files.

    python bench/import.py                                   # 100,000 rows, SQLite
    python bench/import.py --postgres
    python bench/import.py --baseline /tmp/main-tree --baseline-rows 20000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import write_config  # noqa: E402

TOPICS = ("agents", "reasoning", "medical")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,topics,frequency\n")
        for n in range(rows):
            topics = ";".join(TOPICS[: 1 + n % 3])
            frequency = "weekly" if n % 5 == 0 else "daily"
            out.write(f"reader{n}@example{n % 97}.org,Reader Number {n},{topics},{frequency}\n")


def run(tree: Path, config: Path, *args: str, stdout: Path | None = None) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MiB, exit code) of one ``newsletter`` process run with the code of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "newsletter", "--config", str(config), *args]
    with open(stdout or os.devnull, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE, cwd=config.parent)
        assert process.stderr is not None
        error = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code != 0:
        sys.exit(f"{' '.join(args)} failed ({code}): {error.decode(errors='replace')[-800:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code


def databases(postgres: bool) -> Callable[[Path, str], str]:
    if not postgres:
        return lambda folder, name: f"sqlite:///{folder}/{name}.db"
    from tests.databases import PostgresServer
    from tests.services import admin_url

    server = PostgresServer(admin_url())
    server.check()
    import atexit

    atexit.register(server.drop_all)
    return lambda folder, name: server.create()


def config_for(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder, [("feed", "arxiv-rss", "feed.xml")])
    path.write_text(path.read_text().replace('database_url = "sqlite:///papers.db"', f'database_url = "{url}"'))
    return path


def bench(tree: Path, rows: int, label: str, database: Callable[[Path, str], str], *, full: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        data = folder / "list.csv"
        write_csv(data, rows)
        first = config_for(folder / "a", database(folder, "a"))
        steps = [("import (all new)", lambda: run(tree, first, "subscribers", "import", "--quiet", str(data))
                  if full else run(tree, first, "subscribers", "import", str(data)))]
        exported = folder / "export.csv"
        if full:
            steps.append(("import again (all unchanged)",
                          lambda: run(tree, first, "subscribers", "import", "--quiet", str(data))))
            steps.append(("export", lambda: run(tree, first, "subscribers", "export", "--quiet", str(exported))))
            second = config_for(folder / "b", database(folder, "b"))
            steps.append(("import of the export (consent records)",
                          lambda: run(tree, second, "subscribers", "import", "--quiet", str(exported))))
        else:
            steps.append(("export", lambda: run(tree, first, "subscribers", "export", str(exported))))
        for name, step in steps:
            wall, cpu, rss, _ = step()
            print(f"| {label} | {rows:,} | {name} | {wall:.2f} | {cpu:.2f} | {rows / wall:,.0f} | {rss:.0f} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="scratch PostgreSQL databases instead of SQLite")
    parser.add_argument("--baseline", type=Path, metavar="TREE", help="a checkout of the old code to run too")
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    options = parser.parse_args()
    database = databases(options.postgres)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{'PostgreSQL' if options.postgres else 'SQLite'}")
    print("| code | rows | step | wall s | CPU s | rows/s (wall) | peak RSS MiB |")
    print("| --- | --: | --- | --: | --: | --: | --: |")
    if options.baseline is not None:
        bench(options.baseline, options.baseline_rows, "baseline", database, full=False)
    bench(ROOT, options.rows, "this tree", database, full=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
