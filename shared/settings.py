"""All settings of every service, read from the environment once, in each entrypoint."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

YANDEX_API_URL = "https://api-metrika.yandex.net"
# the port of a consumer's GET /metrics when METRICS_PORT is not set
SCORER_METRICS_PORT = 9101
UPLOADER_METRICS_PORT = 9102
SCHEDULER_METRICS_PORT = 9103
# TOKEN_ENCRYPTION_KEY of a development stack that sets none (published here, so never for real tokens)
DEVELOPMENT_TOKEN_KEY = "dev-only-change-me"
# NOTIFY_SIGNING_KEY of a development stack that sets none (published too: a local receiver can verify)
DEVELOPMENT_NOTIFY_KEY = "dev-only-notify-key"


class Settings(BaseSettings):
    """Flat settings; tests build `Settings(**overrides)` instead of patching the environment."""

    model_config = SettingsConfigDict(extra="ignore")  # field `database_url` reads env DATABASE_URL

    database_url: str = "postgresql://postgres@127.0.0.1:5432/metrika_score"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    metrika_api_url: str = YANDEX_API_URL
    port: int = 8000
    host: str = "127.0.0.1"
    public_base_url: str = "http://127.0.0.1:8000"
    # "development" (make up, make demo, the tests) lets a service start without TOKEN_ENCRYPTION_KEY and
    # API_KEYS; anything else is production, where every service refuses to start without them
    metrika_score_env: Literal["production", "development"] = "production"

    # fallbacks for requests that do not carry their own token / counter
    metrika_token: SecretStr | None = None
    metrika_counter: int | None = None

    # comma-separated keys accepted in `Authorization: Bearer <key>`; none configured = every call refused
    api_keys: str = ""
    # encrypts the Metrika OAuth tokens at rest (shared/crypto.py): comma-separated keys, the first
    # encrypts, all decrypt; each a Fernet key or any other string, stretched with scrypt
    token_encryption_key: SecretStr = SecretStr("")
    # management calls per API key in any 60 s, counted in Postgres so every gateway replica shares it
    api_rate_per_minute: int = 600
    # a request body must arrive within this long (a body sent slowly holds a connection and memory)
    body_read_timeout_s: float = 30.0

    # broker: every queue and exchange name starts with this, so tests and stacks can share a broker
    queue_prefix: str = "metrika"
    prefetch_count: int = 2
    shutdown_grace_s: float = 30.0
    outbox_interval_s: float = 2.0
    # consumers: a message whose dependency is down (Postgres, RabbitMQ, Metrika) waits and is requeued,
    # never dead-lettered, the wait growing from consumer_backoff_initial_s to consumer_backoff_max_s; a
    # message whose handler fails otherwise (a bug) is retried consumer_retries times, then dead-lettered
    consumer_backoff_initial_s: float = 0.5
    consumer_backoff_max_s: float = 30.0
    consumer_retries: int = 5

    # scorer
    models_dir: str = ""  # empty: the artifacts shipped in models/
    work_dir: str = "/tmp/metrika-score"
    logs_poll_initial_s: float = 2.0
    logs_poll_max_s: float = 60.0
    logs_poll_timeout_s: float = 6 * 3600.0
    # a scorer polls a log request still being prepared (a huge day) for this long, then gives the task's
    # turn back: the request is kept, and the task polls it again after LOGS_POLL_MAX_S (0: never)
    logs_prepare_hold_s: float = 30.0
    # Yandex's Logs API quota: requests per second per IP; a scorer paces its calls under it (0: no pacing)
    logs_api_rps: int = 10
    # Logs API calls in flight per counter, across every scorer replica (Yandex allows 3 parallel requests
    # per user; held in Postgres, shared/db/slots.py; 0: no limit)
    logs_api_parallel_per_counter: int = 3
    # tasks a scorer works on at once (its prefetch): a slow or broken counter's task holds one of them,
    # the others go on; downloads and polls overlap, the CPU-bound scoring runs one task at a time (a
    # replica takes up to this many queued tasks at once: higher hoards work other replicas could do)
    scorer_concurrency: int = 4
    # uploader: Metrika takes up to ~2 h to process an upload
    upload_poll_s: float = 30.0
    upload_processing_timeout_s: float = 24 * 3600.0
    # tries of one call in process (429, 5xx, timeouts); longer outages are scheduled durably (below)
    http_retry_attempts: int = 3
    http_retry_max_s: float = 10.0
    # every call to Metrika gives up after this long (a hung call never holds anyone else's work)
    metrika_timeout_s: float = 60.0

    # durable retries: a transient Metrika failure (429, 5xx, timeout, connection) is tried again at
    # next_attempt_at (kept in Postgres), after a backoff growing from retry_base_s to retry_max_s, for
    # up to retry_horizon_s; only then does the work end in error
    retry_horizon_s: float = 24 * 3600.0
    retry_base_s: float = 5.0
    retry_max_s: float = 900.0
    # the sweeper: every sweep_interval_s one replica re-queues work that is due, or has not moved for
    # stale_after_s (its message was lost or dead-lettered, its worker died); after sweep_max_requeues
    # re-queues without progress the work ends in error with the reason
    sweep_interval_s: float = 2.0
    stale_after_s: float = 300.0
    sweep_max_requeues: int = 10
    # a scorer renews the lease of the task it runs; a task whose lease lapsed is re-queued
    task_lease_s: float = 60.0
    # a backfill's days queued at once: each day that finishes queues the next, so a long backfill never
    # puts all its days ahead of other counters' tasks
    backfill_parallel: int = Field(3, ge=1, le=365)
    # uploader: status queries in flight at once, in all; uploads (and goal lookups) and status queries in
    # flight per counter across every uploader replica (Yandex allows 3 parallel requests per user; held in
    # Postgres; 0: no limit); a file past upload_processing_timeout_s is reported and then checked every
    # upload_slow_poll_s, and corrected if Metrika finishes later
    poll_concurrency: int = 16
    counter_concurrency: int = 3
    # waiting for a counter's slot (Logs API calls, uploads) ends after this long: the work is given back
    # to a durable retry instead of holding a consumer slot that other counters' work needs
    counter_slot_wait_s: float = 30.0
    upload_slow_poll_s: float = 3600.0
    # CRM webhook bodies (amoCRM, Bitrix24) are kept this long, to be replayed through a changed mapping
    crm_retention_days: int = 30

    # a counter's time zone (its days, its visit times, a conversion date_time without a zone) is read from
    # the Management API (shared/counter_zones.py), kept in Postgres and asked again after counter_zone_ttl_s;
    # counter_timezone is the fallback while it cannot be read (and nothing was kept)
    counter_timezone: str = "Europe/Moscow"
    counter_zone_ttl_s: float = 24 * 3600.0
    # one look-up of a counter's zone gives up after this long (it may hold a request); after a failure the
    # counter is not asked again for counter_zone_retry_s
    counter_zone_timeout_s: float = 5.0
    counter_zone_retry_s: float = 60.0
    # older conversions are refused: Metrika links a conversion only to a recent visit
    conversion_max_age_days: int = 90
    # webhook submissions per webhook and minute, counted in Postgres so every gateway replica shares it
    webhook_rate_per_minute: int = 60

    # the scheduler (README "Schedules"): how often it looks for runs that are due and runs that finished
    scheduler_interval_s: float = Field(default=30.0, gt=0)

    # monitoring (README "Monitoring"): the gateway's GET /metrics asks for `Authorization: Bearer
    # <metrics_token>` when one is set (else it is open, like /health); a scorer, an uploader or a scheduler
    # serves GET /metrics on HOST:METRICS_PORT, unset: its default (SCORER_METRICS_PORT,
    # UPLOADER_METRICS_PORT, SCHEDULER_METRICS_PORT), 0: none
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=0, lt=65536)
    # notifications (shared/notify.py): the signed summary POSTed to a task's, upload's or webhook's
    # callback URL, signed with notify_signing_key (HMAC-SHA256), tried for up to notify_horizon_s with a
    # backoff growing from notify_retry_base_s to notify_retry_max_s, each attempt within notify_timeout_s;
    # private and loopback targets are refused unless notify_allow_private (a development stack allows them)
    notify_signing_key: SecretStr = SecretStr("")
    notify_horizon_s: float = 24 * 3600.0
    notify_retry_base_s: float = 10.0
    notify_retry_max_s: float = 3600.0
    notify_timeout_s: float = 10.0
    notify_interval_s: float = 1.0
    notify_allow_private: bool = False

    @field_validator("counter_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name like Europe/Moscow") from exc
        return value

    @model_validator(mode="after")
    def _development_key(self) -> Settings:
        if self.metrika_score_env == "development":
            if not self.token_encryption_key.get_secret_value():
                self.token_encryption_key = SecretStr(DEVELOPMENT_TOKEN_KEY)
            if not self.notify_signing_key.get_secret_value():
                self.notify_signing_key = SecretStr(DEVELOPMENT_NOTIFY_KEY)
        return self

    def require_production_secrets(self, *names: str) -> None:
        """Outside development, refuse to start (SystemExit, a one-line message) unless the secrets are
        set: by default TOKEN_ENCRYPTION_KEY and API_KEYS, or the `names` given."""
        if self.metrika_score_env == "development":
            return
        values = {
            "TOKEN_ENCRYPTION_KEY": self.token_encryption_key.get_secret_value().replace(",", "").strip(),
            "API_KEYS": ",".join(self.api_key_set()),
            "NOTIFY_SIGNING_KEY": self.notify_signing_key.get_secret_value().strip(),
        }
        missing = [name for name in names or ("TOKEN_ENCRYPTION_KEY", "API_KEYS") if not values[name]]
        if missing:
            listed = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
            raise SystemExit(
                f"error: {listed} must be set outside development"
                " (METRIKA_SCORE_ENV=development runs a development stack without them)"
            )

    def counter_zone(self) -> ZoneInfo:
        return ZoneInfo(self.counter_timezone)

    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())
