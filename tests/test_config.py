"""Config errors are one line naming the key path, the value found and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.config.reference import render_reference
from newsletter.errors import ConfigError
from tests.conftest import ROOT, write_config

GOOD_SOURCE = [("arxiv", "arxiv-rss", "feeds/cs.AI.xml")]


def load_with(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    load_settings(path)


def test_example_configs_load() -> None:
    production = load_settings(ROOT / "config.toml")
    offline = load_settings(ROOT / "examples" / "offline.toml")
    assert all(s.url.startswith("https://") for s in production.sources)
    assert all(Path(s.url).is_file() for s in offline.sources)
    assert [t.slug for t in production.topics] == [t.slug for t in offline.topics]


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, GOOD_SOURCE))
    assert settings.sources[0].url == str(tmp_path.resolve() / "feeds" / "cs.AI.xml")
    assert settings.newsletter.database_url == f"sqlite:///{tmp_path.resolve() / 'papers.db'}"


def test_environment_overrides_the_database_url(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path, GOOD_SOURCE), environ={"NEWSLETTER_DATABASE_URL": "sqlite:////tmp/other.db"}
    )
    assert settings.newsletter.database_url == "sqlite:////tmp/other.db"


def test_wrong_kind_names_the_key_path_value_and_choices(tmp_path: Path) -> None:
    path = write_config(tmp_path, [*GOOD_SOURCE, ("b", "arxiv-rss", "b.xml"), ("c", "atom", "c.xml")])
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"{path}: sources[2].kind: expected one of 'arxiv-rss', 'arxiv-api', 'hf-daily', 'rss', found 'atom'"
    )
    assert caught.value.key == "sources[2].kind"


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD_SOURCE, extra="retries = 3")
    with pytest.raises(ConfigError, match=re.escape(
        "fetch.retries: unknown key (found 3); expected one of: timeout_seconds, max_bytes, max_retries, "
        "backoff_seconds, max_retry_after_seconds, per_host_delay_seconds, allow_private_redirects, user_agent"
    )):
        load_settings(path)


def test_wrong_type_says_expected_type_and_found_value(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD_SOURCE, extra='max_bytes = "lots"')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: fetch.max_bytes: expected an integer, found 'lots'"


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, '[newsletter]\nfrom_address = "a@example.org"\n')
    assert str(caught.value) == (
        f"{tmp_path / 'config.toml'}: newsletter.base_url: missing required key; expected a string "
        "(Public URL of the web pages; links in emails (manage, unsubscribe, archive) start with it)"
    )


def test_value_checks(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD_SOURCE, topics='[[topics]]\nslug = "Big Data"\nname = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"{path}: topics[0].slug: expected a slug of lowercase letters, digits and '-' "
        "(e.g. 'efficient-training'), found 'Big Data'"
    )


def test_a_missing_ca_file_is_named_and_a_present_one_resolves(tmp_path: Path) -> None:
    delivery = '[delivery]\nsecurity = "tls"\nca_file = "relay-ca.pem"\n'
    path = write_config(tmp_path, GOOD_SOURCE, extra=delivery)
    with pytest.raises(ConfigError, match=r"delivery\.ca_file: no such file: .*relay-ca\.pem"):
        load_settings(path)
    (tmp_path / "relay-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    assert load_settings(path).delivery.ca_file == str(tmp_path.resolve() / "relay-ca.pem")


def test_timezone_is_checked(tmp_path: Path) -> None:
    text = write_config(tmp_path, GOOD_SOURCE).read_text().replace(
        'name = "Test Papers"', 'name = "Test Papers"\ntimezone = "Mars/Olympus"'
    )
    with pytest.raises(ConfigError, match=re.escape(
        "newsletter.timezone: expected an IANA time zone name such as 'UTC' or 'Europe/Berlin', found 'Mars/Olympus'"
    )):
        load_with(tmp_path, text)


def test_duplicate_source_names(tmp_path: Path) -> None:
    path = write_config(tmp_path, [*GOOD_SOURCE, ("arxiv", "rss", "x.xml")])
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"{path}: sources[1].name: expected a unique name, found 'arxiv' (already used by sources[0])"
    )


def test_list_item_of_wrong_type(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD_SOURCE, topics='[[topics]]\nslug = "a"\nname = "A"\nkeywords = ["x", 3]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f'{path}: topics[0].keywords[1]: expected a string, found 3 (put it in quotes: "...")'


def test_toml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, "[newsletter\nname = 1\n")
    assert str(caught.value).startswith(f"{tmp_path / 'config.toml'}: invalid TOML: ")


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.toml")
    assert str(caught.value) == (
        f"config file not found: {tmp_path / 'nope.toml'} (pass --config PATH or set NEWSLETTER_CONFIG)"
    )


def test_every_setting_is_documented() -> None:
    """docs/configuration.md is generated from the declarations; regenerate with the command it names."""
    documented = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert render_reference() in documented, "run: python -m newsletter.config.reference > docs/configuration.md"
