"""Counted nouns for the CLI's sentences: "1 email", "2 emails" (an operator reads these every day)."""

from __future__ import annotations

_IRREGULAR = {"variant of": "variants of", "has": "have", "is": "are", "was": "were"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1: ``plural(1, "paper") == "1 paper"``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun) or noun + 's'}"


def nouns(count: int, noun: str, many: str | None = None) -> str:
    """Only the noun, in the number ``count`` asks for (for sentences that print the count elsewhere)."""
    return plural(count, noun, many).split(" ", 1)[1]
