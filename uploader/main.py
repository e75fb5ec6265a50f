"""The uploader's composition root: the consumer of conversion_uploads plus the status poller."""

from __future__ import annotations

import asyncio
import functools
import logging

import aiohttp

from shared import broker, db
from shared.consumer import serve
from shared.crypto import TokenCipher
from shared.schemas import UploadBatches
from shared.settings import Settings
from uploader.deps import Deps
from uploader.handler import BATCHES_AT_ONCE, handle_upload_batches
from uploader.poller import run_poller

logger = logging.getLogger(__name__)


async def main(settings: Settings, stop: asyncio.Event) -> None:
    topology = broker.Topology(settings.queue_prefix)
    await db.ensure_database(settings.database_url)
    # each batch being uploaded holds a connection for its lock and borrows another for its queries
    pool = await db.create_pool(
        settings.database_url, max_size=2 * settings.prefetch_count * BATCHES_AT_ONCE + 2
    )
    connection = await broker.connect(settings.amqp_url)
    try:
        async with aiohttp.ClientSession() as session:
            deps = Deps(
                pool=pool,
                session=session,
                cipher=TokenCipher(settings.token_encryption_key),
                api_url=settings.metrika_api_url,
                retry_attempts=settings.http_retry_attempts,
                retry_max_s=settings.http_retry_max_s,
                poll_interval_s=settings.upload_poll_s,
                processing_timeout_s=settings.upload_processing_timeout_s,
            )
            poller = asyncio.create_task(run_poller(deps, stop))
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
                )
            finally:
                stop.set()
                await poller
    finally:
        await connection.close()
        await pool.close()
