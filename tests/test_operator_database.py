"""Database paths an operator gets wrong: a folder that cannot be made or written, a mistyped path."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.support import run


def config_with(tmp_path: Path, url: str) -> Path:
    path = write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])
    path.write_text(path.read_text(encoding="utf-8").replace('"sqlite:///papers.db"', f'"{url}"'), encoding="utf-8")
    return path


def test_a_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")
    url = f"sqlite:///{tmp_path}/afile/data/papers.db"
    assert run(config_with(tmp_path, url), "subscribers", "list") == (
        1, f"Error: cannot create database '{url}': cannot create its folder '{tmp_path}/afile/data' "
           "(Not a directory)\n")


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write to, root included (root ignores mode bits, not the immutable flag)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    probe = folder / "probe"
    try:
        probe.touch()
    except OSError:
        pass
    else:
        probe.unlink()
        pytest.fail("cannot make a read-only folder here (root without CAP_LINUX_IMMUTABLE?)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_a_read_only_folder_is_one_line_naming_the_folder(tmp_path: Path, read_only_folder: Path) -> None:
    url = f"sqlite:///{read_only_folder}/papers.db"
    code, output = run(config_with(tmp_path, url), "status")
    assert (code, output) == (
        1, f"Error: cannot open database '{url}': unable to open database file; check that this user can write "
           f"to '{read_only_folder}' and to 'papers.db' in it\n")


def test_a_reading_command_warns_about_a_new_empty_database_once(tmp_path: Path) -> None:
    config = config_with(tmp_path, "sqlite:///papres.db")
    code, output = run(config, "subscribers", "list")
    assert code == 0
    assert output.splitlines()[0] == (
        "warning: sqlite:///" + str(tmp_path / "papres.db") + " did not exist or was empty, so it is a new, empty "
        "database; is [newsletter] database_url (or --config) mistyped?")
    code, output = run(config, "subscribers", "list")
    assert (code, "warning" in output) == (0, False)


def test_a_writing_command_creates_the_database_without_a_warning(tmp_path: Path) -> None:
    config = config_with(tmp_path, "sqlite:///papers.db")
    code, output = run(config, "subscribers", "add", "ada@example.org")
    assert (code, output) == (0, "added ada@example.org (active; agents, reasoning, medical; daily)\n")
