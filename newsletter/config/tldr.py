"""The optional ``[email.tldr]`` table: TL;DRs from an operator's OpenAI-compatible endpoint.

A table of its own (``newsletter.usecases.tldr_model`` reads it) so that the email settings stay short.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.config.checks import check_optional_http_url, check_positive
from newsletter.config.declare import setting


@dataclass(frozen=True, kw_only=True)
class TldrSettings:
    endpoint: str = setting(
        "",
        "Optional OpenAI-compatible API base URL (`http://127.0.0.1:8080/v1` for a local llama.cpp server, "
        "`http://127.0.0.1:11434/v1` for Ollama) that writes the cards' TL;DRs; an answer longer than 220 "
        "characters, or naming a number or name the abstract lacks, is refused. Empty: the extractive TL;DR only.",
        check=check_optional_http_url,
    )
    model: str = setting("", "The model name sent to `endpoint` (empty: `default`).")
    api_key_env: str = setting("", "Environment variable holding a bearer key for `endpoint` (empty: none is sent).")
    seconds: float = setting(
        30.0, "Time budget of `endpoint` for all the papers of one send, preview or copy; papers it did not answer "
              "in time keep the extractive TL;DR.", check=check_positive)
