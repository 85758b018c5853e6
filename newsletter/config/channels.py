"""``[[channels]]``: the chat channels that receive each edition (docs/channels.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from newsletter.config.checks import check_non_empty, check_positive, check_slug
from newsletter.config.declare import setting


@dataclass(frozen=True, kw_only=True)
class ChannelSettings:
    name: str = setting(help="Unique name of the channel, used by `channels test NAME`, `status` and the ledger.",
                        check=check_slug)
    url_env: str = setting(
        help="Environment variable holding the channel's Apprise URL (docs/channels.md); the URL holds a secret, "
             "so it is never written in this file.", check=check_non_empty)
    frequency: Literal["daily", "weekly"] = setting("daily", "Which editions the channel receives.")
    topics: tuple[str, ...] = setting((), "Topic slugs whose papers the channel receives; empty: every topic.")
    papers: int = setting(5, "How many top papers the message lists (the rest: a link to the edition).",
                          check=check_positive)
