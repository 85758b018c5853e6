"""How a setting is declared: its default, help text and check travel in the dataclass field's metadata.

The loader and the reference generator read that metadata; ``settings`` declares every key with these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field
from typing import Any

Check = Callable[[Any], str | None]
"""A value check: returns what was expected when the value is wrong, None when it is fine."""


def setting(default: Any = dataclasses.MISSING, help: str = "", *, check: Check | None = None) -> Any:
    """Declare one setting: its default (none means required), its help text and an optional check."""
    metadata = {"help": help, "check": check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default for sequences")  # pragma: no cover - programming error
    return field(default=default, metadata=metadata)


def section(cls: type, help: str) -> Any:
    """A table of settings that all have defaults, so the whole table may be left out."""
    return field(default_factory=cls, metadata={"help": help, "check": None})
