"""The scheduler's composition root: the loop over schedules, the outbox relay that publishes the tasks it
creates (any number of replicas may run: Postgres decides which one makes each run), and its GET /metrics
(on HOST:METRICS_PORT, by default SCHEDULER_METRICS_PORT)."""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

import aiohttp

from scheduler.loop import Clock, Scheduler, ZoneOf, utc_now
from shared import broker, db, metrics
from shared.counter_zones import CounterZones
from shared.crypto import TokenCipher
from shared.relay import OutboxRelay
from shared.settings import SCHEDULER_METRICS_PORT, Settings

logger = logging.getLogger(__name__)


async def main(
    settings: Settings, stop: asyncio.Event, *, clock: Clock = utc_now, zone_of: ZoneOf | None = None
) -> None:
    """`clock` and `zone_of` are for tests (a day later without waiting a day; zones without Metrika)."""
    settings.require_production_secrets("TOKEN_ENCRYPTION_KEY")
    topology = broker.Topology(settings.queue_prefix)
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, max_size=4)
    name = f"{settings.queue_prefix} scheduler"
    relay = OutboxRelay(pool, settings.amqp_url, topology, settings.outbox_interval_s, name=name)
    session = aiohttp.ClientSession()
    metrics_port = SCHEDULER_METRICS_PORT if settings.metrics_port is None else settings.metrics_port
    try:
        await relay.try_connect()
        scheduler = Scheduler(
            pool,
            TokenCipher(settings.token_encryption_key),
            zone_of or _zones(CounterZones(pool, session, settings)),
            interval_s=settings.scheduler_interval_s,
            max_age_days=settings.conversion_max_age_days,
            publisher=relay,
            clock=clock,
        )
        async with metrics.endpoint(settings.host, metrics_port):
            relaying = asyncio.create_task(relay.run(stop), name="outbox relay")
            logger.info("scheduler ready (every %.1fs)", settings.scheduler_interval_s)
            try:
                await scheduler.run(stop)
            finally:
                stop.set()
                await relaying
    finally:
        await relay.close()
        await session.close()
        await pool.close()


def _zones(zones: CounterZones) -> ZoneOf:
    """Each counter's zone, from the Management API and cached (shared/counter_zones.py); a token that
    cannot be read: the zone cached, else COUNTER_TIMEZONE."""

    async def zone_of(counter: int, token: str | None) -> ZoneInfo:
        return await zones.zone(counter, token) if token is not None else await zones.cached(counter)

    return zone_of
