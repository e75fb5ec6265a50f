"""The uploader's composition root: the consumer of conversion_uploads, the status poller, the sweeper and
the notification sender."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid

import aiohttp

from shared import broker, db, metrics
from shared.consumer import RetryPolicy, serve
from shared.crypto import TokenCipher
from shared.db.slots import UPLOADS, CounterSlots
from shared.notify import Sender
from shared.schemas import UploadBatches
from shared.settings import UPLOADER_METRICS_PORT, Settings
from uploader.deps import Deps
from uploader.handler import BATCHES_AT_ONCE, handle_upload_batches
from uploader.poller import run_poller
from uploader.sweeper import run_sweeper

logger = logging.getLogger(__name__)


async def main(settings: Settings, stop: asyncio.Event) -> None:
    # a consumer also sends the notifications, signed with NOTIFY_SIGNING_KEY
    settings.require_production_secrets("TOKEN_ENCRYPTION_KEY", "API_KEYS", "NOTIFY_SIGNING_KEY")
    topology = broker.Topology(settings.queue_prefix)
    await db.ensure_database(settings.database_url)
    # each batch being uploaded holds a connection for its lock and borrows another for its queries;
    # the poller's queries in flight each borrow one while they record an answer
    pool = await db.create_pool(
        settings.database_url,
        max_size=2 * settings.prefetch_count * BATCHES_AT_ONCE + settings.poll_concurrency // 2 + 4,
    )
    slots = CounterSlots(
        settings.database_url, {UPLOADS: settings.counter_concurrency}, settings.counter_slot_wait_s
    )
    connection = await broker.connect(settings.amqp_url, name=f"{settings.queue_prefix} uploader")
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await broker.declare(channel, topology)

        async def requeue(batch_ids: list[uuid.UUID]) -> None:
            # bounded: the sweeper holds its claim's row locks until the broker confirms
            message = UploadBatches(batch_ids=batch_ids)
            await asyncio.wait_for(broker.publish(exchange, broker.CONVERSION_UPLOADS, message), timeout=5.0)

        metrics_port = UPLOADER_METRICS_PORT if settings.metrics_port is None else settings.metrics_port
        async with metrics.endpoint(settings.host, metrics_port), aiohttp.ClientSession() as session:
            deps = Deps(
                pool=pool,
                session=session,
                cipher=TokenCipher(settings.token_encryption_key),
                settings=settings,
                slots=slots,
            )
            background = [
                asyncio.create_task(run_poller(deps, stop)),
                asyncio.create_task(run_sweeper(deps, requeue, stop)),
                asyncio.create_task(Sender(pool, settings).run(stop)),
            ]
            try:
                await serve(
                    connection,
                    topology,
                    broker.CONVERSION_UPLOADS,
                    UploadBatches,
                    functools.partial(handle_upload_batches, deps=deps),
                    stop,
                    prefetch=settings.prefetch_count,
                    grace_s=settings.shutdown_grace_s,
                    retry=RetryPolicy.from_settings(settings),
                )
            finally:
                stop.set()
                # the poller gives its queries in flight the grace period itself; never wait longer
                await asyncio.wait(background, timeout=settings.shutdown_grace_s + 5)
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
    finally:
        await connection.close()
        await slots.close()
        await pool.close()
