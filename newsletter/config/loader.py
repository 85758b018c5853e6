"""Reading ``config.toml``: walk the declared settings, convert and check each value, resolve paths.

Every problem is a ``ConfigError`` naming the key path, the value found and what was expected.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from newsletter.config.checks import broker_problem
from newsletter.config.settings import (
    BROKER_URL_ENV,
    CONFIG_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CONFIG,
    Settings,
)
from newsletter.errors import ConfigError

log = logging.getLogger(__name__)


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: Path | str | None = None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and resolve a config file; raise ConfigError with the key path on the first problem."""
    environ = os.environ if environ is None else environ
    config_path = Path(path) if path is not None else default_config_path()
    shown = str(config_path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {shown} (pass --config PATH or set {CONFIG_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=shown) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=shown) from None
    return settings_from_mapping(raw, config_path=config_path, environ=environ)


def settings_from_mapping(
    raw: Mapping[str, Any], *, config_path: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    shown = str(config_path)
    settings: Settings = _build(Settings, raw, "", shown)
    base = config_path.resolve().parent
    newsletter = settings.newsletter
    database_url = (environ or {}).get(DATABASE_URL_ENV) or newsletter.database_url
    settings = dataclasses.replace(
        settings,
        config_path=config_path,
        newsletter=dataclasses.replace(newsletter, database_url=resolve_database_url(database_url, base)),
        sources=tuple(dataclasses.replace(s, url=_resolve_location(s.url, base)) for s in settings.sources),
    )
    broker = (environ or {}).get(BROKER_URL_ENV)
    if broker:
        expected = broker_problem(broker)
        if expected is not None:
            raise ConfigError(f"{BROKER_URL_ENV}: expected {expected}, found {_show(broker)}", path=shown)
        settings = dataclasses.replace(settings, workers=dataclasses.replace(settings.workers, broker=broker))
    delivery = settings.delivery
    dkim = delivery.dkim
    settings = dataclasses.replace(
        settings,
        delivery=dataclasses.replace(
            delivery,
            outbox=str((base / delivery.outbox).resolve()),
            ca_file=str((base / delivery.ca_file).resolve()) if delivery.ca_file else "",
            dkim=dataclasses.replace(dkim, private_key_path=str((base / dkim.private_key_path).resolve()))
            if dkim
            else None,
        ),
    )
    if settings.delivery.ca_file and not Path(settings.delivery.ca_file).is_file():
        raise ConfigError(f"delivery.ca_file: no such file: {settings.delivery.ca_file}", path=shown)
    if settings.email.template_dir:
        template_dir = str((base / settings.email.template_dir).resolve())
        settings = dataclasses.replace(settings, email=dataclasses.replace(settings.email, template_dir=template_dir))
    _check_unique(settings.sources, "sources", "name", shown)
    _check_unique(settings.topics, "topics", "slug", shown)
    _check_unique(settings.channels, "channels", "name", shown)
    _check_unique(settings.webhooks, "webhooks", "url", shown)
    _check_channel_topics(settings.channels, {t.slug for t in settings.topics}, shown)
    _check_formerly(settings.topics, shown)
    _warn_plain_http(settings.newsletter.base_url, shown)
    return settings


def _check_channel_topics(channels: tuple[Any, ...], slugs: set[str], shown: str) -> None:
    for index, channel in enumerate(channels):
        unknown = [slug for slug in channel.topics if slug not in slugs]
        if unknown:
            key = f"channels[{index}].topics"
            raise ConfigError(f"{key}: no topic {unknown[0]!r}; configured topics: {', '.join(sorted(slugs))}",
                              path=shown, key=key)


def _check_formerly(topics: tuple[Any, ...], shown: str) -> None:
    """An old slug names one topic that no longer exists: else moving its readers would be ambiguous."""
    current = {t.slug: i for i, t in enumerate(topics)}
    claimed: dict[str, int] = {}
    for index, topic in enumerate(topics):
        for old in topic.formerly:
            key = f"topics[{index}].formerly"
            if old in current:
                raise ConfigError(f"{key}: {old!r} is the slug of topics[{current[old]}], which still exists; "
                                  "list only slugs no topic uses any more", path=shown, key=key)
            if old in claimed and claimed[old] != index:
                raise ConfigError(f"{key}: {old!r} is also listed by topics[{claimed[old]}].formerly; an old slug "
                                  "can move to one topic only", path=shown, key=key)
            claimed[old] = index


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _warn_plain_http(base_url: str, shown: str) -> None:
    """Every link in every email starts with base_url: over plain http, the signed unsubscribe and manage
    tokens travel in the clear, and Gmail and Yahoo expect https for one-click unsubscribe. Not an error,
    since a local try-out (127.0.0.1) has no certificate."""
    parts = urlsplit(base_url)
    if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        log.warning("%s: newsletter.base_url is plain http (%s): links in emails carry signed tokens and "
                    "one-click unsubscribe expects https; serve the pages over https", shown, base_url)


def resolve_database_url(url: str, base: Path) -> str:
    """Make a relative SQLite file path absolute against the config folder; leave other URLs alone."""
    match = re.fullmatch(r"(sqlite(?:\+\w+)?):///(.+)", url)
    if not match or match.group(2).startswith(("/", ":memory:")):
        return url
    return f"{match.group(1)}:///{(base / match.group(2)).resolve()}"


def _resolve_location(url: str, base: Path) -> str:
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        return url
    return str((base / url).resolve())


def _check_unique(items: tuple[Any, ...], table: str, key: str, shown: str) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        value = getattr(item, key)
        if value in seen:
            raise ConfigError(
                f"{table}[{index}].{key}: expected a unique {key}, found {value!r} "
                f"(already used by {table}[{seen[value]}])",
                path=shown,
                key=f"{table}[{index}].{key}",
            )
        seen[value] = index


def describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (tuple, list):
        inner = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(inner):
            return "an array of tables"
        return f"a list of {describe_type(inner).removeprefix('a ').removeprefix('an ')}s"
    if dataclasses.is_dataclass(tp):
        return "a table"
    if origin is types.UnionType:
        return " or ".join(describe_type(arg) for arg in typing.get_args(tp) if arg is not type(None)) + " (optional)"
    return str(tp)  # pragma: no cover - only the types above are declared


def _fail(shown: str, key: str, expected: str, value: Any, hint: str = "") -> ConfigError:
    found = _show(value)
    return ConfigError(f"{key}: expected {expected}, found {found}{hint}", path=shown, key=key)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array" if len(value) < 1 or not all(isinstance(v, dict) for v in value) else "an array of tables"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _build(cls: Any, raw: Any, prefix: str, shown: str) -> Any:
    if not isinstance(raw, dict):
        raise _fail(shown, prefix, "a table", raw)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in raw:
        if key not in fields:
            known = ", ".join(fields)
            raise ConfigError(
                f"{_join(prefix, key)}: unknown key (found {_show(raw[key])}); expected one of: {known}",
                path=shown,
                key=_join(prefix, key),
            )
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                help_text = f.metadata.get("help", "")
                raise ConfigError(
                    f"{key}: missing required key; expected {describe_type(hints[name])}"
                    + (f" ({help_text.rstrip('.')})" if help_text else ""),
                    path=shown,
                    key=key,
                )
            continue
        value = _convert(hints[name], raw[name], key, shown)
        check = f.metadata.get("check")
        if check is not None:
            for item in value if isinstance(value, tuple) else (value,):
                expected = check(item)
                if expected is not None:
                    raise _fail(shown, key, expected, item)
        values[name] = value
    return cls(**values)


def _convert(tp: Any, value: Any, key: str, shown: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(shown, key, "true or false", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(shown, key, "an integer", value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(shown, key, "a number", value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(shown, key, "a string", value, hint=' (put it in quotes: "...")')
    if origin is Literal:
        if value in typing.get_args(tp) and isinstance(value, str):
            return value
        raise _fail(shown, key, describe_type(tp), value)
    if origin in (tuple, list):
        inner = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise _fail(shown, key, describe_type(tp), value)
        if dataclasses.is_dataclass(inner):
            return tuple(_build(inner, item, f"{key}[{i}]", shown) for i, item in enumerate(value))
        return tuple(_convert(inner, item, f"{key}[{i}]", shown) for i, item in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, shown)
    if origin is types.UnionType:
        inner = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _convert(inner[0], value, key, shown)
    raise TypeError(f"unsupported setting type {tp}")  # pragma: no cover - programming error
