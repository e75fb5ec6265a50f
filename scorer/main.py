"""The scorer's composition root."""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from scorer import model, pipeline
from scorer.handler import Deps, handle_score_task
from shared import broker, db
from shared.consumer import serve
from shared.crypto import TokenCipher
from shared.schemas import ScoreTask
from shared.settings import Settings

logger = logging.getLogger(__name__)


def logs_api_settings(settings: Settings) -> pipeline.LogsApiSettings:
    return pipeline.LogsApiSettings(
        base_url=settings.metrika_api_url,
        poll_initial_s=settings.logs_poll_initial_s,
        poll_max_s=settings.logs_poll_max_s,
        poll_timeout_s=settings.logs_poll_timeout_s,
        retry_attempts=settings.http_retry_attempts,
        retry_max_s=settings.http_retry_max_s,
    )


async def main(settings: Settings, stop: asyncio.Event) -> None:
    settings.require_production_secrets()
    models = model.load_models(settings.models_dir or None)  # refuse to start on a mismatched artifact
    topology = broker.Topology(settings.queue_prefix)
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url)
    connection = await broker.connect(settings.amqp_url)
    # pandas/numpy release the GIL for most of the work; one thread keeps the loop free for progress updates
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=300)) as session:
            deps = Deps(
                pool=pool,
                session=session,
                cipher=TokenCipher(settings.token_encryption_key),
                models=models,
                api=logs_api_settings(settings),
                work_dir=Path(settings.work_dir),
                executor=executor,
            )
            logger.info("scorer ready (model %s)", models.version)
            await serve(
                connection,
                topology,
                broker.SCORE_TASKS,
                ScoreTask,
                functools.partial(handle_score_task, deps=deps),
                stop,
                prefetch=settings.prefetch_count,
                grace_s=settings.shutdown_grace_s,
            )
    finally:
        await connection.close()
        await pool.close()
        executor.shutdown(wait=False, cancel_futures=True)
