"""`subscribers import` of files as spreadsheets write them: Windows-1252, Latin-1, BOMs, ';' between columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.storage.db import open_database
from subscribers.store import SubscriberStore
from tests.conftest import write_config
from tests.support import run


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])


def names(config: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    return {s.email: (s.name, s.topics) for s in store.list_all()}


EXCEL = ("email;name;topics\r\nzoe@example.org;Zoë Müller-Šuša;agents,medical\r\n"
         "francois@example.org;François “Fanfan” Ñuñez;\r\n")


def test_a_windows_1252_file_with_semicolons_imports_and_says_how_it_was_read(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(EXCEL.encode("cp1252"))
    code, output = run(config, "subscribers", "import", str(path))
    assert (code, output.splitlines()) == (0, ["read as cp1252, columns separated by ';'",
                                               "2 rows: 2 added, 0 updated, 0 unchanged, 0 not imported"])
    assert names(config) == {"zoe@example.org": ("Zoë Müller-Šuša", ("agents", "medical")),
                             "francois@example.org": ("François “Fanfan” Ñuñez", ("agents", "reasoning", "medical"))}


def test_latin_1_bytes_undefined_in_cp1252_fall_back_to_latin_1(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,name\nada@example.org,Ad\x81a Ålund\n".encode("latin-1"))
    code, output = run(config, "subscribers", "import", str(path), "--json")
    assert code == 0
    report = json.loads(output)
    assert (report["encoding"], report["delimiter"], report["added"]) == ("latin-1", ",", ["ada@example.org"])
    assert names(config)["ada@example.org"][0] == "Ada Ålund"  # the C1 control \x81 is not kept


def test_utf8_with_bom_and_tabs(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "sheets.tsv"
    path.write_bytes("\ufeffemail\tname\tfrequency\nzoe@example.org\tZoë\tweekly\n".encode())
    code, output = run(config, "subscribers", "import", str(path))
    assert (code, output.splitlines()[0]) == (0, "read as utf-8 with BOM, columns separated by tabs")
    assert names(config) == {"zoe@example.org": ("Zoë", ("agents", "reasoning", "medical"))}


def test_a_plain_utf8_comma_file_prints_what_it_always_did(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("email,topics\nzoe@example.org,agents;medical\n", encoding="utf-8")
    assert run(config, "subscribers", "import", str(path)) == (
        0, "1 row: 1 added, 0 updated, 0 unchanged, 0 not imported\n")
    assert names(config)["zoe@example.org"][1] == ("agents", "medical")


def test_encoding_option_and_its_errors(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(EXCEL.encode("cp1252"))
    assert run(config, "subscribers", "import", str(path), "--encoding", "utf-8") == (
        1, "Error: line 2: not utf-8 text (byte 0xeb); leave out --encoding to detect it\n")
    assert run(config, "subscribers", "import", str(path), "--encoding", "klingon") == (
        1, "Error: unknown encoding 'klingon' (try utf-8, cp1252 or latin-1)\n")
    code, output = run(config, "subscribers", "import", str(path), "--encoding", "latin-1")
    assert (code, output.splitlines()[0]) == (0, "read as latin-1, columns separated by ';'")


def test_nul_and_control_characters_do_not_survive_import_or_export(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "controls.csv"
    path.write_bytes("email,name\nada@example.org,Ada\x00Love\x1b]0;x\x07lace\u202e\nbob@example.org,Bob\x9b31m\n"
                     .encode())
    code, output = run(config, "subscribers", "import", str(path))
    assert code == 0, output
    assert names(config) == {"ada@example.org": ("AdaLove]0;xlace", ("agents", "reasoning", "medical")),
                             "bob@example.org": ("Bob31m", ("agents", "reasoning", "medical"))}
    exported = tmp_path / "out.csv"
    assert run(config, "subscribers", "export", str(exported))[0] == 0
    text = exported.read_text(encoding="utf-8")
    assert "\x00" not in text
    assert "\x1b" not in text
    assert "AdaLove]0;xlace" in text
