"""Topic changes an operator makes in [[topics]]: a renamed slug keeps its readers, a new topic reaches the
readers of every topic, and a removed one is reported instead of silently vanishing from emails."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ROOT
from tests.support import run, secret_fixture

ROBOTICS = '''
[[topics]]
slug = "robotics"
name = "Robotics"
description = "Robots, embodied agents, manipulation and locomotion."
keywords = ["robot", "embodied", "manipulation"]
categories = ["cs.RO"]
'''


secret = secret_fixture("k1:topic-change-secret-0123456789")


def write(folder: Path, *, rename: bool = False, formerly: bool = False, extra: str = "") -> Path:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    if rename:
        text = text.replace('slug = "reasoning"\n', 'slug = "llm-reasoning"\n'
                            + ('formerly = ["reasoning"]\n' if formerly else ""))
    path = folder / "config.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def topics_of(config: Path) -> dict[str, list[str]]:
    code, output = run(config, "subscribers", "list", "--json")
    assert code == 0, output
    listed = json.loads(output[output.index("{"):])
    return {s["email"]: s["topics"] for s in listed["subscribers"]}


def test_a_renamed_topic_keeps_its_readers_and_their_emails(tmp_path: Path) -> None:
    config = write(tmp_path)
    assert run(config, "fetch")[0] == 0
    assert run(config, "subscribers", "add", "ada@example.org", "--topics", "reasoning")[0] == 0
    assert run(config, "status")[0] == 0

    config = write(tmp_path, rename=True)  # renamed without saying so: fetch and status warn
    warning = ("warning: 1 reader chose topic 'reasoning', which is no longer in [[topics]]; if it was renamed, "
               "add formerly = ['reasoning'] to the new topic")
    for command in ("fetch", "status"):
        code, output = run(config, command)
        assert code == 0
        assert warning in output.splitlines(), output

    config = write(tmp_path, rename=True, formerly=True)
    code, output = run(config, "subscribers", "show", "ada@example.org", "--json")
    assert output.splitlines()[0] == "topic renamed (reasoning -> llm-reasoning): moved 1 reader"
    assert json.loads(output[output.index("{"):])["subscriber"]["topics"] == ["llm-reasoning"]
    code, output = run(config, "status")
    assert (code, "no longer in [[topics]]" in output) == (0, False)
    code, output = run(config, "preview", "--subscriber", "ada@example.org", "--out", str(tmp_path / "p"))
    assert code == 0, output
    assert "Reasoning" in (tmp_path / "p").joinpath(next(p.name for p in (tmp_path / "p").glob("*.html"))).read_text(
        encoding="utf-8")


def test_readers_of_every_topic_get_topics_added_later_and_others_do_not(tmp_path: Path) -> None:
    config = write(tmp_path)
    assert run(config, "subscribers", "add", "all@example.org")[0] == 0
    assert run(config, "subscribers", "add", "some@example.org", "--topics", "agents,retrieval")[0] == 0
    config = write(tmp_path, extra=ROBOTICS)
    _, output = run(config, "subscribers", "list", "--json")
    assert output.splitlines()[0] == "new topic 'robotics': added for 1 reader of every topic"
    topics = topics_of(config)
    assert topics["all@example.org"][-1] == "robotics"
    assert topics["some@example.org"] == ["agents", "retrieval"]
    assert run(config, "subscribers", "list", "--json")[1].startswith("{")  # once only


def test_an_old_slug_must_not_name_a_topic_that_exists(tmp_path: Path) -> None:
    config = write(tmp_path, extra=ROBOTICS.replace('slug = "robotics"', 'slug = "robotics"\nformerly = ["agents"]'))
    code, output = run(config, "status")
    assert (code, output) == (1, f"Error: {config}: topics[6].formerly: 'agents' is the slug of topics[1], which "
                                 "still exists; list only slugs no topic uses any more\n")
