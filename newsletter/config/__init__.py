"""Config: ``config.toml`` in, frozen typed ``Settings`` out (every key declared once with type, default, help).

The declarations are in ``settings`` (``[trending]`` in ``trending``; ``declare`` says how one is declared), reading
and checking in ``loader``, the generated reference in ``reference``.
"""

from newsletter.config.feedback import FeedbackSettings
from newsletter.config.loader import load_settings, resolve_database_url, settings_from_mapping
from newsletter.config.settings import (
    BROKER_URL_ENV,
    CONFIG_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CONFIG,
    DeliverySettings,
    DkimSettings,
    EmailSettings,
    FetchSettings,
    InboundSettings,
    MatchingSettings,
    NewsletterSettings,
    ScheduleSettings,
    Settings,
    SourceSettings,
    TopicSettings,
    WebSettings,
    WorkersSettings,
)
from newsletter.config.trending import TrendingSettings

__all__ = [
    "BROKER_URL_ENV",
    "CONFIG_ENV",
    "DATABASE_URL_ENV",
    "DEFAULT_CONFIG",
    "DeliverySettings",
    "DkimSettings",
    "EmailSettings",
    "FeedbackSettings",
    "FetchSettings",
    "InboundSettings",
    "MatchingSettings",
    "NewsletterSettings",
    "ScheduleSettings",
    "Settings",
    "SourceSettings",
    "TopicSettings",
    "TrendingSettings",
    "WebSettings",
    "WorkersSettings",
    "load_settings",
    "resolve_database_url",
    "settings_from_mapping",
]
