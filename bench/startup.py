"""CPU time of short commands: `python -c pass`, `--help`, `status`, and `send` of a stored edition.

Each command runs in a fresh process (as an operator runs it); the CPU time is the child's user + system
time (``resource.getrusage(RUSAGE_CHILDREN)``), the best of ``--repeat`` runs, so other load on the machine
counts as little as possible. Also reports whether scikit-learn, SciPy or torch were imported
(``-X importtime``). Set-up (not timed): the offline example's feeds fetched into a temporary SQLite file,
one subscriber, today's edition sent once to the demo's local SMTP server.

    python bench/startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.demo.maildir_server import MaildirServer  # noqa: E402
from newsletter.demo.run import write_demo_config  # noqa: E402


def child_cpu(command: list[str], env: dict[str, str]) -> tuple[float, bool]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True, env=env,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command}: exit {done.returncode}: {done.stderr[-2000:]}")
    heavy = any(re.search(r"\|\s+(sklearn|scipy|torch)$", line.rstrip()) for line in done.stderr.splitlines())
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ, NEWSLETTER_SECRET="k1:bench-startup-0123456789", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as folder, MaildirServer(Path(folder) / "Maildir") as sink:
        config = str(write_demo_config(Path(folder), smtp_port=sink.port))
        cli = ["-m", "newsletter", "--config", config]
        for setup in (["fetch"], ["subscribers", "add", "ada@example.org", "--topics", "agents"], ["send"]):
            child_cpu([*cli, *setup], env)
        cases = {
            "python -c pass": ["-c", "pass"],
            "newsletter --help": ["-m", "newsletter", "--help"],
            "newsletter status": [*cli, "status"],
            "newsletter send (stored edition, nothing left to send)": [*cli, "send"],
            "newsletter send --to (stored edition)": [*cli, "send", "--to", "editor@example.net"],
        }
        print(f"{datetime.now(UTC):%Y-%m-%d}, best of {args.repeat}, CPU seconds (user + system):")
        for name, command in cases.items():
            runs = [child_cpu(command, env) for _ in range(args.repeat)]
            print(f"| {name} | {min(t for t, _ in runs):.2f} | {'yes' if any(h for _, h in runs) else 'no'} |")


if __name__ == "__main__":
    main()
