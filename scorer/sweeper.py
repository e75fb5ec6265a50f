"""The scorer's sweeper: nothing stays stuck, nothing is left behind.

Every SWEEP_INTERVAL_S, in every scorer replica (Postgres row locks keep them off each other's tasks):
- re-queue the tasks whose retry is due, whose scorer stopped renewing its lease (it died), and pending
  tasks that have not moved for STALE_AFTER_S (their message was lost or dead-lettered); a task re-queued
  SWEEP_MAX_REQUEUES times without its scorer reaching a decision fails with the reason;
- release the next days of backfills with fewer than BACKFILL_PARALLEL days queued or running and days
  waiting (a day's finishing statement releases the next one; this is the safety net should it not);
- cancel or clean the Logs API requests of runs that are over (a killed scorer never cleaned them: a
  prepared request counts against the counter's 10 GB until it is), except those a pending task kept for
  its next attempt (its day was still being prepared when it gave its turn back);
- remove the work directories of tasks no scorer is running (up to 108 MB of parts each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from scorer import pipeline
from scorer.handler import Deps, release_leftovers
from shared import broker
from shared.db import locks, log_requests, tasks
from shared.schemas import ScoreTask

logger = logging.getLogger(__name__)

BATCH = 100  # tasks handled per step and sweep
BROKER_TIMEOUT_S = 5.0  # a broker that is away fails the step instead of holding the sweep


class Sweeper:
    def __init__(self, deps: Deps, connection: AbstractRobustConnection, topology: broker.Topology) -> None:
        self.deps = deps
        self._connection = connection
        self._topology = topology
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep at once (a restarted scorer cleans what it left), then every SWEEP_INTERVAL_S."""
        while not stop.is_set():
            await self.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.deps.settings.sweep_interval_s)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def sweep(self) -> None:
        # one step failing (Postgres or the broker away) never keeps the others from running
        for step in (self.requeue, self.release_backfills, self.release_requests, self.remove_work_dirs):
            try:
                await step()
            except Exception as exc:
                logger.warning("sweeper: %s failed: %s: %s", step.__name__, type(exc).__name__, exc)

    async def requeue(self) -> int:
        """Publish a ScoreTask for every task that is due or stuck; returns how many were re-queued.

        The rows stay locked until their messages are confirmed: if the broker is away, nothing changes
        and the next sweep tries again."""
        settings = self.deps.settings
        exchange = await asyncio.wait_for(self._get_exchange(), BROKER_TIMEOUT_S)
        requeued = 0
        async with self.deps.pool.acquire() as conn, conn.transaction():
            for row in await tasks.lock_due(conn, settings.stale_after_s, BATCH):
                why = (
                    "its scorer stopped renewing the lease"
                    if row["status"] == "running"
                    else "its retry is due"
                    if row["scheduled"]
                    else f"it had not moved for {settings.stale_after_s:g} s (its message was lost)"
                )
                if row["requeues"] >= settings.sweep_max_requeues:
                    last = f"; last error: {row['last_error']}" if row["last_error"] else ""
                    reason = f"re-queued {row['requeues']} times without finishing, now {why}{last}"
                    logger.warning("task %s failed: %s", row["id"], reason)
                    await tasks.fail(conn, row["id"], reason, "stuck")
                    continue
                try:
                    message = ScoreTask(task_id=row["id"])
                    await asyncio.wait_for(
                        broker.publish(exchange, broker.SCORE_TASKS, message), BROKER_TIMEOUT_S
                    )
                except Exception:
                    self._exchange = None
                    raise
                # a re-queued message gets as long to be picked up as a new one before it counts as lost
                await tasks.requeue(conn, row["id"], settings.stale_after_s, f"re-queued: {why}")
                logger.info("task %s re-queued: %s", row["id"], why)
                requeued += 1
        return requeued

    async def release_backfills(self) -> int:
        """Queue the next days of every backfill short of BACKFILL_PARALLEL queued or running days (a
        backfill another transaction holds is left to it); returns how many days were released."""
        parallel = self.deps.settings.backfill_parallel
        released = 0
        for parent_id in await tasks.short_backfills(self.deps.pool, parallel, BATCH):
            async with self.deps.pool.acquire() as conn, conn.transaction():
                rows = await tasks.release(conn, parent_id, parallel) or []
            for outbox_id, body in rows:
                logger.info("backfill %s: day task %s released by the sweeper", parent_id, body["task_id"])
                if self.deps.relay is not None:
                    await self.deps.relay.publish_now([outbox_id], broker.SCORE_TASKS, body)
            released += len(rows)
        return released

    async def release_requests(self) -> int:
        """Cancel or clean the unreleased Logs API requests of tasks no scorer is running; returns how many
        are left for a later sweep (Yandex away)."""
        left = 0
        for task_id in await log_requests.tasks_with_leftovers(self.deps.pool, BATCH):
            async with locks.hold(self.deps.pool, task_id) as locked:
                if not locked:  # a scorer is running it: it releases them itself
                    continue
                task = await tasks.get(self.deps.pool, task_id)
                if task is not None:  # a pending task goes on with its kept requests
                    keep = task["status"] == "pending"
                    left += await release_leftovers(self.deps, task_id, task["token_enc"], keep_kept=keep)
        return left

    async def remove_work_dirs(self) -> int:
        """Remove WORK_DIR/<task id>/ of every task no scorer is running; returns how many were removed."""
        work_dir = self.deps.work_dir
        if not work_dir.is_dir():
            return 0
        found = {}
        for path in work_dir.iterdir():
            with contextlib.suppress(ValueError):
                if path.is_dir():
                    found[uuid.UUID(path.name)] = path
        if not found:
            return 0
        busy = await tasks.leased(self.deps.pool, list(found))
        removed = 0
        for task_id, path in found.items():
            if task_id in busy:
                continue
            async with locks.hold(self.deps.pool, task_id) as locked:
                if locked:  # no scorer holds the task: its parts are leftovers
                    await pipeline.remove_dir(path)
                    logger.info("removed the leftover work directory %s", path)
                    removed += 1
        return removed

    async def _get_exchange(self) -> AbstractExchange:
        if self._exchange is None or self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await broker.declare(self._channel, self._topology)
        return self._exchange
