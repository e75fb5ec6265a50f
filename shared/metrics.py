"""Prometheus metrics: every metric of every service, the state read at scrape time, and the exposition.

Each process counts what it does itself (the counters and histograms below, in prometheus-client's default
registry, with its process_* and python_* metrics); every replica is scraped on its own. The state of
the system (tasks and conversions by status, the outbox backlog, dead letters, queue depths) is read by
the gateway when it is scraped (`State`), once for scrapes that arrive together, and never for longer
than STATE_TIMEOUT_S: past that a scrape answers with the last values it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import asyncpg
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.db import stats

logger = logging.getLogger(__name__)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LONG = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

# gateway
HTTP_REQUESTS = Counter(
    "metrika_score_http_requests",
    "HTTP requests answered, by method, route (its path template) and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "metrika_score_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route and status",
    ["method", "route", "status"],
    buckets=_LATENCY,
)
# consumers (scorer, uploader)
MESSAGES = Counter(
    "metrika_score_messages",
    "Messages handled by a consumer, by queue and outcome (ack, retry, requeue, dead_letter)",
    ["queue", "outcome"],
)
MESSAGE_DURATION = Histogram(
    "metrika_score_message_duration_seconds",
    "Time a consumer spent on a message, by queue",
    ["queue"],
    buckets=_LONG,
)
MESSAGES_IN_FLIGHT = Gauge(
    "metrika_score_messages_in_flight", "Messages being handled by this consumer now, by queue", ["queue"]
)
# every Metrika call (shared/metrika.py)
METRIKA_CALLS = Counter(
    "metrika_score_metrika_api_calls",
    "Calls to a Metrika API (each try of a retried call counts), by api (logs, conversions, management) and"
    " outcome (ok, rate_limited, client_error, server_error, timeout, connection_error)",
    ["api", "outcome"],
)
METRIKA_DURATION = Histogram(
    "metrika_score_metrika_api_call_duration_seconds",
    "Time of one Metrika API call (a Logs API download streams its part within it), by api",
    ["api"],
    buckets=_LATENCY,
)
# uploader
UPLOADS = Counter(
    "metrika_score_uploads",
    "Conversion files sent to Metrika, by outcome (uploaded, refused, deferred, processed, failed)",
    ["outcome"],
)
# scorer
LOGS_API_BYTES = Counter("metrika_score_logs_api_bytes", "Bytes downloaded from the Logs API")
LOGS_API_SECONDS = Histogram(
    "metrika_score_logs_api_seconds",
    "Time of one Logs API export, by stage (prepare: Yandex builds the log; download: its parts)",
    ["stage"],
    buckets=_LONG,
)
# every service that looks up counters' time zones (shared/counter_zones.py; the scheduler's loop)
COUNTER_ZONE_FAILURES = Counter(
    "metrika_score_counter_zone_failures",
    "Look-ups of a counter's time zone that failed, by outcome (fallback: the Management API failed or named"
    " an unknown zone, the zone kept or COUNTER_TIMEZONE is used; skipped: the scheduler could not look the"
    " zone up and skipped the counter's schedule for this tick)",
    ["outcome"],
)
# scheduler (scheduler/loop.py)
SCHEDULER_RUNS = Counter(
    "metrika_score_scheduler_runs", "Runs claimed (each with its task), by kind (score, rescore)", ["kind"]
)
SCHEDULER_FOLLOW_UPS = Counter(
    "metrika_score_scheduler_follow_ups",
    "Runs whose task finished, followed up, by outcome (uploaded, completed, failed, nothing_new: a completed"
    " run with nothing new to upload, upload_error: its upload could not be made, tried again next tick)",
    ["outcome"],
)
SCHEDULER_TICK_SECONDS = Histogram(
    "metrika_score_scheduler_tick_seconds",
    "Time of one scheduler tick (claims and follow-ups), failed ticks included",
    buckets=_LATENCY,
)
SCHEDULER_LAST_TICK = Gauge(
    "metrika_score_scheduler_last_tick_timestamp_seconds",
    "Unix time at which this scheduler's last successful tick ended (0: none yet)",
)
# read from Postgres at the end of each tick (every replica reports the same values: aggregate with max)
SCHEDULER_SCHEDULES = Gauge(
    "metrika_score_scheduler_schedules", "Schedules by state (active, paused)", ["state"]
)
SCHEDULER_RUNS_WAITING = Gauge(
    "metrika_score_scheduler_runs_waiting",
    "Runs waiting for their task to finish (status scoring), by kind (score, rescore)",
    ["kind"],
)

# how long the gateway reads the state (below) when it is scraped, at most (Prometheus waits 10 s)
STATE_TIMEOUT_S = 3.0


class State(Collector):
    """The system's state, read from Postgres (indexed counts, estimates for big tables) and from RabbitMQ
    (passive declares of `queues`); scrapes that arrive while a read is under way share it. A source that
    fails or takes longer than `timeout_s` keeps its last values and reports `metrika_score_state_up` 0."""

    def __init__(self, queues: Sequence[str], *, timeout_s: float = STATE_TIMEOUT_S) -> None:
        self._queues = list(queues)
        self._timeout_s = timeout_s
        self._db: dict[str, dict[str, float]] = {}
        self._depths: dict[str, float] = {}
        self._up = {"postgres": 0.0, "rabbitmq": 0.0}
        self._reading: asyncio.Future[tuple[None, None]] | None = None
        # its own registry (exposed beside the process's): each gateway app in a process has its State
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def refresh(self, pool: asyncpg.Pool, connection: AbstractRobustConnection | None) -> None:
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.gather(self._read_db(pool), self._read_queues(connection))
        await asyncio.shield(reading)  # a scrape that gives up does not cancel the others' read

    async def _read_db(self, pool: asyncpg.Pool) -> None:
        try:
            async with asyncio.timeout(self._timeout_s), pool.acquire() as conn:
                self._db = await stats.snapshot(conn)
            self._up["postgres"] = 1.0
        except Exception as exc:
            logger.warning("metrics: could not read the state from Postgres (%r)", exc)
            self._up["postgres"] = 0.0

    async def _read_queues(self, connection: AbstractRobustConnection | None) -> None:
        if connection is None:
            self._up["rabbitmq"] = 0.0
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                channel = await connection.channel()
                try:
                    for name in self._queues:
                        queue = await channel.declare_queue(name, passive=True)
                        self._depths[name] = float(queue.declaration_result.message_count or 0)
                finally:
                    await channel.close()
            self._up["rabbitmq"] = 1.0
        except Exception as exc:
            logger.warning("metrics: could not read the queue depths from RabbitMQ (%r)", exc)
            self._up["rabbitmq"] = 0.0

    def collect(self) -> Iterable[Metric]:
        yield _gauge("metrika_score_state_up", "1 if the last read of the state worked", "source", self._up)
        yield _gauge("metrika_score_tasks", "Scoring tasks by status", "status", self._db.get("tasks", {}))
        yield _gauge(
            "metrika_score_conversions",
            f"Conversion rows by status (estimated from the planner's statistics above"
            f" {stats.EXACT_CONVERSIONS} rows)",
            "status",
            self._db.get("conversions", {}),
        )
        backlog = GaugeMetricFamily("metrika_score_outbox_backlog", "Outbox messages not yet published")
        if "outbox" in self._db:
            backlog.add_metric([], self._db["outbox"][""])
        yield backlog
        yield _gauge(
            "metrika_score_dead_letters",
            "Dead letters not replayed, by routing key",
            "routing_key",
            self._db.get("dead_letters", {}),
        )
        yield _gauge("metrika_score_queue_messages", "Messages ready in a queue", "queue", self._depths)


def _gauge(name: str, documentation: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def exposition(*extra: CollectorRegistry) -> bytes:
    """The text a scrape gets: this process's metrics, then those of `extra` registries."""
    return b"".join(generate_latest(registry) for registry in (REGISTRY, *extra))


def response(*extra: CollectorRegistry) -> web.Response:
    return web.Response(body=exposition(*extra), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _metrics(request: web.Request) -> web.Response:
    return response()


@asynccontextmanager
async def endpoint(host: str, port: int) -> AsyncIterator[int | None]:
    """GET /metrics of a consumer (or the scheduler) on `host:port` while the block runs (port 0: none);
    yields the port, or None when off. A port that cannot be bound is logged, and the service runs on
    without metrics."""
    if not port:
        yield None
        return
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            logger.error("metrics: cannot listen on %s:%s (%s); running without /metrics", host, port, exc)
            yield None
        else:
            logger.info("metrics on http://%s:%s/metrics", host, port)
            yield port
    finally:
        await runner.cleanup()
