"""An operating-system or database error in any command is one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from newsletter.storage.db import open_database
from tests.conftest import ROOT, write_config
from tests.support import run


def test_exporting_into_a_folder_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])
    target = tmp_path / "no-such-dir" / "x.csv"
    assert run(config, "subscribers", "add", "ada@example.org")[0] == 0
    assert run(config, "subscribers", "export", str(target)) == (1, f"Error: No such file or directory: {target}\n")


def test_the_same_through_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])
    done = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config), "subscribers", "export",
                           "no-such-dir/x.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=False)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[-1] == "Error: No such file or directory: no-such-dir/x.csv"
    assert "Traceback" not in done.stderr


def test_a_database_damaged_after_its_migrations_is_one_line_without_the_sql(tmp_path: Path) -> None:
    """A table gone (a restore that went wrong): the driver's reason, not SQLAlchemy's statement and link."""
    config = write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])
    assert run(config, "subscribers", "add", "ada@example.org")[0] == 0
    open_database(f"sqlite:///{tmp_path / 'papers.db'}").dispose()
    with sqlite3.connect(tmp_path / "papers.db") as connection:
        connection.execute("DROP TABLE subscribers")
    code, output = run(config, "subscribers", "list")
    assert (code, output) == (1, "Error: database error: no such table: subscribers\n")
