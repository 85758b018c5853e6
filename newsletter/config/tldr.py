"""The optional ``[email.tldr]`` table: TL;DRs from an operator's OpenAI-compatible endpoint.

A table of its own (``newsletter.usecases.tldr_model`` reads it) so that the email settings stay short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from newsletter.config.checks import check_optional_http_url, check_positive


def _setting(default: Any, help: str, check: Callable[[Any], str | None] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "check": check})


@dataclass(frozen=True, kw_only=True)
class TldrSettings:
    endpoint: str = _setting(
        "",
        "Optional OpenAI-compatible API base URL (`http://127.0.0.1:8080/v1` for a local llama.cpp server, "
        "`http://127.0.0.1:11434/v1` for Ollama) that writes the cards' TL;DRs; an answer longer than 220 "
        "characters, or naming a number or name the abstract lacks, is refused. Empty: the extractive TL;DR only.",
        check_optional_http_url,
    )
    model: str = _setting("", "The model name sent to `endpoint` (empty: `default`).")
    api_key_env: str = _setting("", "Environment variable holding a bearer key for `endpoint` (empty: none is sent).")
    seconds: float = _setting(
        30.0, "Time budget of `endpoint` for all the papers of one send, preview or copy; papers it did not answer "
              "in time keep the extractive TL;DR.", check_positive)
