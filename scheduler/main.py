"""The scheduler's composition root: the loop over schedules, and the outbox relay that publishes the
tasks it creates (any number of replicas may run: Postgres decides which one makes each run)."""

from __future__ import annotations

import asyncio
import logging
from zoneinfo import ZoneInfo

from scheduler.loop import Clock, Scheduler, ZoneOf, utc_now
from shared import broker, db
from shared.crypto import TokenCipher
from shared.relay import OutboxRelay
from shared.settings import Settings

logger = logging.getLogger(__name__)


async def main(
    settings: Settings, stop: asyncio.Event, *, clock: Clock = utc_now, zone_of: ZoneOf | None = None
) -> None:
    """`clock` and `zone_of` are for tests (a day later without waiting a day; zones without Metrika)."""
    settings.require_production_secrets("TOKEN_ENCRYPTION_KEY")
    topology = broker.Topology(settings.queue_prefix)
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, max_size=4)
    relay = OutboxRelay(
        pool,
        settings.amqp_url,
        topology,
        settings.outbox_interval_s,
        name=f"{settings.queue_prefix} scheduler",
    )
    try:
        await relay.try_connect()
        scheduler = Scheduler(
            pool,
            TokenCipher(settings.token_encryption_key),
            zone_of or _fallback_zones(settings),
            interval_s=settings.scheduler_interval_s,
            max_age_days=settings.conversion_max_age_days,
            publisher=relay,
            clock=clock,
        )
        relaying = asyncio.create_task(relay.run(stop), name="outbox relay")
        logger.info("scheduler ready (every %.1fs)", settings.scheduler_interval_s)
        try:
            await scheduler.run(stop)
        finally:
            stop.set()
            await relaying
    finally:
        await relay.close()
        await pool.close()


def _fallback_zones(settings: Settings) -> ZoneOf:
    """FALLBACK until shared.counter_zones.CounterZones (branch i12zones) is merged: COUNTER_TIMEZONE."""

    async def zone_of(counter: int, token: str | None) -> ZoneInfo:
        return settings.counter_zone()

    return zone_of
