"""The chat channels in `status`: each channel's pause and last result, and each edition's channel rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.storage.channels import ChannelLedger


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def channels_view(settings: Settings, engine: Engine) -> list[dict[str, Any]]:
    known = ChannelLedger(engine).statuses()
    view = []
    for channel in settings.channels:
        status = known.get(channel.name)
        view.append({
            "name": channel.name,
            "frequency": channel.frequency,
            "topics": list(channel.topics),
            "paused": status.paused_reason if status else None,
            "last_result": status.last_result if status else None,
            "last_at": _iso(status.last_at) if status else None,
        })
    return view


def edition_channel_rows(engine: Engine, edition_id: int) -> list[dict[str, Any]]:
    return [{
        "channel": row["channel"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_code": row["last_code"],
        "last_message": row["last_message"],
        "next_attempt_at": _iso(row["next_attempt_at"]),
        "sent_at": _iso(row["sent_at"]),
    } for row in ChannelLedger(engine).rows(edition_id)]
