"""handle_score_task: one message on the score_tasks queue -> one task scored and stored, retried later in
Postgres when Metrika is away for now."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from scorer import pipeline, results
from scorer.logs_api import LogsApiClient
from scorer.model import Models
from shared import broker, metrika
from shared.crypto import TokenCipher
from shared.db import locks, log_requests, tasks
from shared.db.slots import CounterSlots
from shared.metrika import PREPARING, MetrikaError
from shared.relay import OutboxRelay
from shared.schemas import ScoreTask
from shared.settings import Settings

logger = logging.getLogger(__name__)

# a duplicate message waits this long for the task's lock before it is dropped
LOCK_TRIES, LOCK_PAUSE_S = 6, 0.5


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    cipher: TokenCipher
    models: Models
    settings: Settings
    executor: Executor | None
    # the counters' Logs API slots, shared by every replica (None: no limit, as in some tests)
    slots: CounterSlots | None = None
    # publishes the message of a backfill's next day, which a day's finishing statement wrote to the
    # outbox (without one, the gateway's outbox sweep does, a few seconds later)
    relay: OutboxRelay | None = None

    @property
    def work_dir(self) -> Path:
        return Path(self.settings.work_dir)

    def task_dir(self, task_id: uuid.UUID) -> Path:
        """Where a task's parts go: one directory per task, so the next run (or the sweeper) knows whose
        leftovers it removes."""
        return self.work_dir / str(task_id)

    def client(self, token_enc: bytes, counter: int) -> LogsApiClient:
        token = self.cipher.decrypt(token_enc)
        return LogsApiClient(self.session, self.settings, token, counter, slots=self.slots)


class TaskLedger:
    """Records a task's Logs API requests in Postgres, and keeps those still being prepared across its
    attempts (scorer.logs_api.Ledger and Keeper)."""

    def __init__(self, pool: asyncpg.Pool, task_id: uuid.UUID, counter: int) -> None:
        self.pool, self.task_id, self.counter = pool, task_id, counter

    async def created(self, request_id: str, source: str) -> None:
        await log_requests.add(self.pool, self.counter, request_id, self.task_id, source)

    async def released(self, request_id: str) -> None:
        await log_requests.release(self.pool, self.counter, request_id)

    async def resumable(self, source: str) -> tuple[str, float] | None:
        return await log_requests.resumable(self.pool, self.task_id, source)

    async def kept(self, request_id: str) -> None:
        await log_requests.keep(self.pool, self.counter, request_id)


async def handle_score_task(body: ScoreTask, deps: Deps) -> None:
    # the task's lock: held by the scorer running it, or for a moment by a sweeper cleaning up after it
    for _ in range(LOCK_TRIES):
        async with locks.hold(deps.pool, body.task_id) as locked:
            if locked:
                await _score(body.task_id, deps)
                return
        await asyncio.sleep(LOCK_PAUSE_S)
    logger.info("task %s is being scored elsewhere; dropping this duplicate message", body.task_id)


async def release_leftovers(
    deps: Deps, task_id: uuid.UUID, token_enc: bytes, *, keep_kept: bool = True
) -> int:
    """Cancel or clean the Logs API requests an earlier run of the task left behind (it crashed, or Yandex
    was away when it tried), but with `keep_kept` not the newest kept one of each source (the task goes on
    with it); the caller holds the task's lock. Returns how many are still left."""
    left = 0
    rows = await log_requests.unreleased(deps.pool, task_id)
    newest_kept = {row["source"]: row["request_id"] for row in rows if row["kept"]}  # rows oldest first
    for row in rows:
        if keep_kept and newest_kept.get(row["source"]) == row["request_id"]:
            continue
        if await deps.client(token_enc, row["counter"]).release(row["request_id"]):
            await log_requests.release(deps.pool, row["counter"], row["request_id"])
            logger.info("task %s: released log request %s of an earlier run", task_id, row["request_id"])
        else:
            left += 1
    return left


@contextlib.asynccontextmanager
async def heartbeat(pool: asyncpg.Pool, task_id: uuid.UUID, lease_s: float) -> AsyncIterator[None]:
    """Renew the task's lease every third of it while the body runs: a scorer that dies stops renewing,
    and the sweeper re-queues the task once the lease has run out."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                if not await tasks.extend_lease(pool, task_id, lease_s):
                    logger.warning("task %s: no longer running here, lease not renewed", task_id)
            except (asyncpg.PostgresError, OSError) as exc:
                logger.warning("task %s: lease not renewed: %s", task_id, exc)

    beating = asyncio.create_task(beat(), name=f"lease {task_id}")
    try:
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def _score(task_id: uuid.UUID, deps: Deps) -> None:
    settings = deps.settings
    task = await tasks.claim(deps.pool, task_id, settings.task_lease_s)
    if task is None:
        # unknown, or finished by an earlier delivery: nothing to do, and nothing to duplicate
        logger.info("task %s is not pending or running; skipping", task_id)
        return
    logger.info(
        "task %s: scoring counter %s for %s (attempt %s)",
        task_id,
        task["counter"],
        task["day"],
        task["attempts"],
    )
    try:
        await _run(task, deps)
    finally:
        if task["parent_id"] is not None:  # a backfill's day: its finish may have queued the next day
            await _publish_next_days(deps, task["parent_id"])


async def _publish_next_days(deps: Deps, parent_id: uuid.UUID) -> None:
    """Publish the unpublished messages of the backfill's days now (best effort: the outbox keeps them)."""
    if deps.relay is None:
        return
    try:
        for outbox_id, body in await tasks.unpublished_days(deps.pool, parent_id):
            await deps.relay.publish_now([outbox_id], broker.SCORE_TASKS, body)
    except (asyncpg.PostgresError, OSError) as exc:
        logger.warning("backfill %s: next days left to the outbox sweep: %s", parent_id, exc)


async def _run(task: asyncpg.Record, deps: Deps) -> None:
    settings, task_id = deps.settings, task["id"]

    async def report(percent: int, message: str) -> None:
        await tasks.set_progress(deps.pool, task_id, percent, message)

    async with heartbeat(deps.pool, task_id, settings.task_lease_s):
        ledger = TaskLedger(deps.pool, task_id, task["counter"])  # also keeps requests across attempts
        try:
            await release_leftovers(deps, task_id, task["token_enc"])
            outcome = await pipeline.run(
                deps.session,
                settings,
                deps.cipher.decrypt(task["token_enc"]),
                task["counter"],
                task["day"],
                deps.models,
                deps.task_dir(task_id),
                report,
                deps.executor,
                ledger,
                deps.slots,
                ledger,
            )
        except MetrikaError as exc:
            await _metrika_failed(deps, task, exc)
            return
        except (ValueError, KeyError) as exc:
            logger.exception("task %s: could not score the downloaded logs", task_id)
            await tasks.fail(deps.pool, task_id, f"could not score the logs: {exc}", "scoring error")
            return
        except OSError as exc:  # the work dir is full or unwritable: that may pass, as an outage does
            logger.exception("task %s: work files", task_id)
            await _retry_later(deps, task, f"work files: {exc}", None)
            return

        try:
            stored = await results.store(
                deps.pool,
                task_id,
                outcome.visits,
                executor=deps.executor,
                report=report,
                total_visits=outcome.total_visits,
                model_version=deps.models.version,
            )
        except ValueError as exc:
            logger.exception("task %s: could not store the scored visits", task_id)
            await tasks.fail(deps.pool, task_id, f"could not store the result: {exc}", "scoring error")
            return
    logger.info(
        "task %s: %s level-4+ visits of %s%s",
        task_id,
        len(outcome.visits),
        outcome.total_visits,
        "" if stored else " (not stored: the task was finished elsewhere)",
    )


async def _metrika_failed(deps: Deps, task: asyncpg.Record, exc: MetrikaError) -> None:
    if exc.error_type == PREPARING:
        # a huge day: the turn goes to other work, and the kept requests are polled again after a while
        await _retry_later(
            deps, task, str(exc), None, delay=deps.settings.logs_poll_max_s, message="waiting for Yandex"
        )
    elif exc.retryable:
        await _retry_later(deps, task, str(exc), exc.retry_after)
    else:
        # Yandex said no: a finished, failed task with Yandex's own words, not a poison message
        logger.warning("task %s failed: %s", task["id"], exc)
        await tasks.fail(deps.pool, task["id"], str(exc), "Logs API error")


async def _retry_later(
    deps: Deps,
    task: asyncpg.Record,
    error: str,
    retry_after: float | None,
    *,
    delay: float | None = None,
    message: str = "waiting to retry",
) -> None:
    """Back to pending with the next attempt time in Postgres (the sweeper re-queues it then) after
    `delay` (default: the backoff of its attempts), or failed once the task has been retrying for
    RETRY_HORIZON_S."""
    settings = deps.settings
    if delay is None:
        delay = metrika.backoff_s(
            task["attempts"],
            base_s=settings.retry_base_s,
            max_s=settings.retry_max_s,
            retry_after=retry_after,
        )
    when = await tasks.retry_later(deps.pool, task["id"], delay, error, message, settings.retry_horizon_s)
    if when is not None:
        logger.warning("task %s: %s; next attempt at %s", task["id"], error, when.isoformat())
        return
    reason = f"gave up after retrying for {_duration(settings.retry_horizon_s)} (RETRY_HORIZON_S): {error}"
    logger.warning("task %s failed: %s", task["id"], reason)
    await tasks.fail(deps.pool, task["id"], reason, "Logs API error")


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
