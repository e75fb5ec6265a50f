"""The scorer's composition root: the score_tasks consumer, the sweeper and the notification sender."""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from scorer import model
from scorer.handler import Deps, handle_score_task
from scorer.sweeper import Sweeper
from shared import broker, db, metrics
from shared.consumer import RetryPolicy, serve
from shared.crypto import TokenCipher
from shared.db.slots import LOGS_API, CounterSlots
from shared.notify import Sender
from shared.relay import OutboxRelay
from shared.schemas import ScoreTask
from shared.settings import SCORER_METRICS_PORT, Settings

logger = logging.getLogger(__name__)


async def main(settings: Settings, stop: asyncio.Event) -> None:
    # a consumer also sends the notifications, signed with NOTIFY_SIGNING_KEY
    settings.require_production_secrets("TOKEN_ENCRYPTION_KEY", "API_KEYS", "NOTIFY_SIGNING_KEY")
    models = model.load_models(settings.models_dir or None)  # refuse to start on a mismatched artifact
    topology = broker.Topology(settings.queue_prefix)
    await db.ensure_database(settings.database_url)
    # each task in hand holds a connection for its lock and borrows one now and then for its progress (one
    # more: the outbox relay)
    pool = await db.create_pool(settings.database_url, max_size=settings.scorer_concurrency + 5)
    slots = CounterSlots(
        settings.database_url,
        {LOGS_API: settings.logs_api_parallel_per_counter},
        settings.counter_slot_wait_s,
    )
    connection = await broker.connect(settings.amqp_url, name=f"{settings.queue_prefix} scorer")
    # the messages of backfills' next days (a finishing day's statement writes them to the outbox)
    relay = OutboxRelay(
        pool,
        settings.amqp_url,
        topology,
        settings.outbox_interval_s,
        name=f"{settings.queue_prefix} scorer relay",
    )
    # pandas/numpy release the GIL for most of the work; one thread keeps the loop free for progress updates
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
    metrics_port = SCORER_METRICS_PORT if settings.metrics_port is None else settings.metrics_port
    session_timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    try:
        async with (
            metrics.endpoint(settings.host, metrics_port),
            aiohttp.ClientSession(timeout=session_timeout) as session,
        ):
            deps = Deps(
                pool=pool,
                session=session,
                cipher=TokenCipher(settings.token_encryption_key),
                models=models,
                settings=settings,
                executor=executor,
                slots=slots,
                relay=relay,
            )
            await relay.try_connect()
            relaying = asyncio.create_task(relay.run(stop), name="outbox relay")
            sweeper = asyncio.create_task(Sweeper(deps, connection, topology).run(stop), name="sweeper")
            sender = asyncio.create_task(Sender(pool, settings).run(stop), name="notifications")
            logger.info("scorer ready (model %s)", models.version)
            try:
                await serve(
                    connection,
                    topology,
                    broker.SCORE_TASKS,
                    ScoreTask,
                    functools.partial(handle_score_task, deps=deps),
                    stop,
                    prefetch=settings.scorer_concurrency,
                    grace_s=settings.shutdown_grace_s,
                    retry=RetryPolicy.from_settings(settings),
                )
            finally:
                stop.set()
                await asyncio.gather(sweeper, sender, relaying)
    finally:
        await relay.close()
        await connection.close()
        await slots.close()
        await pool.close()
        executor.shutdown(wait=False, cancel_futures=True)
