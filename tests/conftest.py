"""Shared fixtures: real feed files, config files written the way an operator writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.db import open_database
from newsletter.store import PaperStore

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

TOPICS_TOML = '''
[[topics]]
slug = "agents"
name = "LLM agents"
description = "Autonomous agents built on large language models that plan, call tools and act."
keywords = ["agent", "tool use", "multi-agent"]
categories = ["cs.MA"]

[[topics]]
slug = "reasoning"
name = "Reasoning"
description = "Mathematical and multi-step reasoning of language models."
keywords = ["reasoning", "chain-of-thought"]

[[topics]]
slug = "medical"
name = "Medical imaging"
description = "Medical image analysis of CT and MRI scans."
keywords = ["medical imaging", "clinical"]
exclude_keywords = ["drug"]
'''


def fixture_path(relative: str) -> Path:
    return FIXTURES / relative


def write_config(
    folder: Path, sources: list[tuple[str, str, str]], *, extra: str = "", topics: str = TOPICS_TOML
) -> Path:
    """Write a config file with the given (name, kind, url) sources; returns its path."""
    lines = [
        "[newsletter]",
        'name = "Test Papers"',
        'from_address = "papers@example.org"',
        'base_url = "https://papers.example.org"',
        'database_url = "sqlite:///papers.db"',
        "",
        "[fetch]",
        "per_host_delay_seconds = 0",
        "timeout_seconds = 5",
        "max_retries = 0",
        extra,
    ]
    for name, kind, url in sources:
        lines += ["[[sources]]", f'name = "{name}"', f'kind = "{kind}"', f'url = "{url}"', ""]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + topics, encoding="utf-8")
    return path


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """The shipped offline example, with its database moved into the test's folder."""
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text = text.replace('database_url = "sqlite:///offline.db"', 'database_url = "sqlite:///offline.db"')
    path = tmp_path / "offline.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


@pytest.fixture
def store(tmp_path: Path) -> PaperStore:
    return PaperStore(open_database(f"sqlite:///{tmp_path / 'store.db'}"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite the golden files in tests/golden/ from the current output (then review the diff).",
    )
