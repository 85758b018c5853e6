"""Generate docs/configuration.md from the setting declarations, so the docs cannot drift from the code.

Run ``python -m newsletter.config.reference > docs/configuration.md`` after changing a setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from newsletter.config.loader import describe_type
from newsletter.config.settings import Settings

HEADER = """# Configuration

`newsletter` reads one TOML file: `--config PATH`, else `$NEWSLETTER_CONFIG`, else `./config.toml`.
Unknown keys, wrong types and missing required keys stop the program with one line naming the key path
(`sources[2].kind`, counting array entries from 0), the value found and what was expected.
Paths (SQLite files, local feed files) are relative to the config file's folder.
Precedence: defaults < config file < environment (`NEWSLETTER_DATABASE_URL`, `NEWSLETTER_BROKER_URL`) <
command-line options.

`config.toml` is the production example; `examples/offline.toml` runs on bundled feed files with no network.

This reference is generated from the code by `python -m newsletter.config.reference > docs/configuration.md`;
a test fails when it is out of date.
"""


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is None:
        return "(none)"
    if f.default is not dataclasses.MISSING:
        value = f.default
        if isinstance(value, bool):
            return "`true`" if value else "`false`"
        if isinstance(value, str):
            return f'`"{value}"`'
        if isinstance(value, tuple):
            return "`[]`" if not value else f"`{list(value)}`"
        return f"`{value}`"
    if f.default_factory is not dataclasses.MISSING:
        return "(table)"
    return "**required**"


def _nested_table(tp: Any) -> Any:
    """The dataclass of a sub-table field (``X`` or ``X | None``), else None."""
    candidates = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _section(title: str, cls: Any, lines: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    lines += [f"## `{title}`", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        lines.append(f"| `{f.name}` | {describe_type(hints[f.name])} | {_default(f)} | {help_text} |")
        table = _nested_table(hints[f.name])
        if table is not None:
            nested.append((f"{title.strip('[]')}.{f.name}", table))
    lines.append("")
    for name, table in nested:
        _section(f"[{name}]", table, lines)


def render_reference() -> str:
    lines: list[str] = []
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        if typing.get_origin(tp) is tuple:
            _section(f"[[{f.name}]]", typing.get_args(tp)[0], lines)
        else:
            _section(f"[{f.name}]", tp, lines)
    return "\n".join(lines)


def main() -> None:
    print(HEADER)
    print(render_reference())


if __name__ == "__main__":
    main()
