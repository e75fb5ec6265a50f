"""handle_score_task: one message on the score_tasks queue -> one task scored and stored."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from scorer import pipeline
from scorer.logs_api import LogsApiError
from scorer.model import Models
from shared.crypto import TokenCipher
from shared.db import locks, tasks
from shared.schemas import ScoreTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    cipher: TokenCipher
    models: Models
    api: pipeline.LogsApiSettings
    work_dir: Path
    executor: Executor | None


async def handle_score_task(body: ScoreTask, deps: Deps) -> None:
    async with locks.hold(deps.pool, body.task_id) as locked:
        if not locked:
            logger.info("task %s is being scored elsewhere; dropping this duplicate message", body.task_id)
            return
        await _score(body, deps)


async def _score(body: ScoreTask, deps: Deps) -> None:
    task = await tasks.claim(deps.pool, body.task_id)
    if task is None:
        # unknown, or finished by an earlier delivery: nothing to do, and nothing to duplicate
        logger.info("task %s is not pending or running; skipping", body.task_id)
        return
    logger.info(
        "task %s: scoring counter %s for %s (attempt %s)",
        task["id"],
        task["counter"],
        task["day"],
        task["attempts"],
    )

    async def report(percent: int, message: str) -> None:
        await tasks.set_progress(deps.pool, task["id"], percent, message)

    try:
        outcome = await pipeline.run(
            deps.session,
            deps.api,
            deps.cipher.decrypt(task["token_enc"]),
            task["counter"],
            task["day"],
            deps.models,
            deps.work_dir,
            report,
            deps.executor,
        )
    except LogsApiError as exc:
        # Yandex said no (or kept failing past the retry limit): a finished, failed task, not a poison message
        logger.warning("task %s failed: %s", task["id"], exc)
        await tasks.fail(deps.pool, task["id"], str(exc), "Logs API error")
        return
    except (ValueError, KeyError) as exc:
        logger.exception("task %s: could not score the downloaded logs", task["id"])
        await tasks.fail(deps.pool, task["id"], f"could not score the logs: {exc}", "scoring error")
        return

    await report(90, "store")
    frame = outcome.visits
    rows = [
        (
            task["id"],
            seq,
            visit_id,
            client_id,
            dt.datetime.strptime(when, "%Y-%m-%d %H:%M:%S"),
            int(duration),
            float(score),
            version,
        )
        for seq, (visit_id, client_id, when, duration, score, version) in enumerate(
            zip(
                frame["visitId"],
                frame["clientId"],
                frame["dateTime"],
                frame["visitDuration"],
                frame["score"],
                frame["model_version"],
                strict=True,
            )
        )
    ]
    async with deps.pool.acquire() as conn:
        stored = await tasks.store_result(
            conn, task["id"], rows, total_visits=outcome.total_visits, model_version=deps.models.version
        )
    logger.info(
        "task %s: %s level-4+ visits of %s%s",
        task["id"],
        len(rows),
        outcome.total_visits,
        "" if stored else " (not stored: the task was finished elsewhere)",
    )
