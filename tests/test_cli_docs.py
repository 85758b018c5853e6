"""docs/cli.md's usage lines against the commands click really has (as datasette checks its docs with cog).

A usage line is a heading ``## `newsletter CMD [OPTIONS…]` `` or, under a heading naming several subcommands
(``subscribers add|remove|…``), a bullet ``- `add EMAIL [--name N] …`: …``. Every command must have one, and a
line must name exactly the command's options: a renamed, removed or added option fails here, not in a reader's
terminal.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from newsletter.cli.main import cli

DOCS = Path(__file__).parent.parent / "docs" / "cli.md"
HEADING = re.compile(r"^## `newsletter ([^`]*)`", re.MULTILINE)
BULLET = re.compile(r"^- `([a-z][a-z-]*)((?: [^`]*)?)`", re.MULTILINE)
OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    """Every command a user can run, by its words after `newsletter`."""
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(commands(command, (*path, name)))
            if command.invoke_without_command:
                found[(*path, name)] = command
        else:
            found[(*path, name)] = command
    return found


def _words(usage: str) -> list[str]:
    """The command words at the start of a usage line (``topics evaluate`` of ``topics evaluate FILE.csv …``)."""
    words: list[str] = []
    for word in usage.split():
        if not re.fullmatch(r"[a-z][a-z|-]*", word):
            break
        words.append(word)
    return words


def usage_lines(text: str) -> dict[tuple[str, ...], set[str]]:
    """Documented command → the options its usage line names."""
    documented: dict[tuple[str, ...], set[str]] = {}
    sections = list(HEADING.finditer(text))
    for number, heading in enumerate(sections):
        words = _words(heading.group(1))
        body_end = sections[number + 1].start() if number + 1 < len(sections) else len(text)
        *parents, last = words
        for name in last.split("|"):
            documented[(*parents, name)] = set(OPTION.findall(heading.group(1)))
        if "|" in last:  # one bullet per subcommand says its own options
            for bullet in BULLET.finditer(text, heading.end(), body_end):
                if bullet.group(1) in last.split("|"):
                    documented[(*parents, bullet.group(1))] = set(OPTION.findall(bullet.group(2)))
    return documented


def options(command: click.Command) -> set[str]:
    return {o for p in command.params if not getattr(p, "hidden", False)
            for o in (*p.opts, *p.secondary_opts) if o.startswith("--") and o != "--help"}


def test_every_command_has_a_usage_line_naming_exactly_its_options() -> None:
    documented = usage_lines(DOCS.read_text(encoding="utf-8"))
    real = commands(cli)
    assert sorted(set(real) - set(documented)) == []  # commands docs/cli.md does not show
    assert sorted(set(documented) - set(real)) == []  # documented commands that do not exist
    wrong = {" ".join(path): {"only in docs": sorted(documented[path] - options(command)),
                              "only in click": sorted(options(command) - documented[path])}
             for path, command in real.items() if documented[path] != options(command)}
    assert wrong == {}


def test_a_drifted_usage_line_is_found() -> None:
    """The comparison above must see drift: an option renamed in the docs, a command they do not know."""
    text = DOCS.read_text(encoding="utf-8")
    drifted = usage_lines(text.replace("`newsletter fetch [--source NAME]... [--json]`",
                                       "`newsletter fetch [--sources NAME]... [--json]`", 1))
    assert drifted[("fetch",)] != options(commands(cli)[("fetch",)])
    assert ("subscribers", "add") in usage_lines(text)
    assert ("subscribers", "purge") not in usage_lines(text)
