"""The scheduler's loop: every `interval_s`, for each active schedule, claim the runs that are due at `now`
(missed days oldest first, then the D+3 re-scores), then follow up the runs whose task finished (their
upload, their status).

Nothing here is held in process memory: a run is claimed by its (counter, day, kind) row, inserted in the
transaction that inserts its task and the task's outbox message, so any number of replicas and restarts
make one run per counter, day and kind; a finished run is followed up under its row lock (SKIP LOCKED).
A counter that fails (a bad token, an unknown zone) is logged and skipped: the others go on.
Each tick is counted in shared/metrics.py (runs claimed, follow-ups by outcome, its time, the last one that
worked, and the gauges of schedules and runs waiting read at its end): README "Monitoring".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg

from shared import broker, errors, logs, metrics, schedule_days
from shared.crypto import TokenCipher
from shared.db import bulk, outbox, schedules, tasks
from shared.schemas import ScoreTask

logger = logging.getLogger(__name__)

# the counter's time zone, given the counter and its token (None: the token cannot be read)
ZoneOf = Callable[[int, str | None], Awaitable[ZoneInfo]]
Clock = Callable[[], dt.datetime]
# follow-ups (uploads, statuses) per tick at most: the next tick goes on
FOLLOW_UPS_PER_TICK = 100


class Publisher(Protocol):
    async def publish_now(
        self, outbox_ids: list[int], routing_key: str, body: dict[str, Any], headers: dict[str, Any] | None
    ) -> bool: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        cipher: TokenCipher,
        zone_of: ZoneOf,
        *,
        interval_s: float,
        max_age_days: int,
        publisher: Publisher | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._zone_of = zone_of
        self._interval_s = interval_s
        self._max_age_days = max_age_days
        self._publisher = publisher
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `interval_s` until `stop`; a tick that fails (Postgres away) is logged and the next
        one tries again."""
        while not stop.is_set():
            try:
                await self.tick(self._clock())
            except Exception as exc:
                if not errors.is_unavailable(exc):
                    logger.exception("scheduler tick failed")
                else:
                    logger.warning("scheduler tick: %s; trying again in %.1fs", exc, self._interval_s)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)

    async def tick(self, now: dt.datetime) -> None:
        """Claim every run due at `now` (aware), then follow up the runs whose task finished; then read the
        gauges of schedules and runs waiting (metrics)."""
        with metrics.SCHEDULER_TICK_SECONDS.time():
            for schedule in await schedules.active(self._pool):
                try:
                    await self._claim_due(schedule, now)
                except Exception as exc:
                    if errors.is_unavailable(exc) and isinstance(exc, (OSError, asyncpg.PostgresError)):
                        raise  # Postgres is away: the next tick tries again
                    logger.warning("schedule %s (counter %s): %r", schedule["id"], schedule["counter"], exc)
            await self.follow_up()
            await self._read_gauges()
        metrics.SCHEDULER_LAST_TICK.set(time.time())

    async def _read_gauges(self) -> None:
        """Schedules by state and runs waiting, from Postgres; a read that fails otherwise than by Postgres
        being away (its statement timeout) keeps the last values and fails nothing else."""
        try:
            async with self._pool.acquire() as conn:
                by_state, waiting = await schedules.gauges(conn)
        except Exception as exc:
            if errors.is_unavailable(exc) and isinstance(exc, (OSError, asyncpg.PostgresError)):
                raise
            logger.warning("scheduler metrics: could not read the schedules' gauges (%r)", exc)
            return
        for state, n in by_state.items():
            metrics.SCHEDULER_SCHEDULES.labels(state).set(n)
        for kind, n in waiting.items():
            metrics.SCHEDULER_RUNS_WAITING.labels(kind).set(n)

    async def _claim_due(self, schedule: asyncpg.Record, now: dt.datetime) -> None:
        token = self._cipher.decrypt_or_none(schedule["token_enc"])
        try:
            zone = await self._zone_of(schedule["counter"], token)
        except Exception:
            metrics.COUNTER_ZONE_FAILURES.labels("skipped").inc()
            raise
        run_at = schedule["run_at"]
        days = schedule_days.score_days(now, run_at, zone, schedule["first_day"])
        if days:
            for day in await schedules.missing_days(self._pool, schedule["counter"], days[0], days[-1]):
                await self._claim(schedule, day, "score", None)
        first, last = schedule_days.rescore_window(now, run_at, zone)
        for run in await schedules.rescore_due(self._pool, schedule["counter"], first, last):
            await self._claim(schedule, run["day"], "rescore", run["task_id"])

    async def _claim(
        self, schedule: asyncpg.Record, day: dt.date, kind: str, rescore_of: uuid.UUID | None
    ) -> None:
        """One run: its row, its task and the task's outbox message in one transaction, or nothing if
        another replica has claimed it."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if rescore_of is None:
                    task_id = uuid.uuid4()
                    if not await schedules.claim(conn, schedule["id"], day, kind, task_id):
                        return
                    counter, token_enc = schedule["counter"], schedule["token_enc"]
                    await tasks.insert(conn, task_id, day, counter, token_enc, schedule["callback_url"])
                else:
                    rescore_id = await tasks.insert_rescore(conn, rescore_of)
                    if rescore_id is None:
                        return
                    task_id = rescore_id
                    if not await schedules.claim(conn, schedule["id"], day, kind, task_id):
                        raise _Taken  # rolls the task back
                message = ScoreTask(task_id=task_id).model_dump(mode="json")
                headers = logs.message_headers()
                outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message, headers)
        except _Taken:
            return
        metrics.SCHEDULER_RUNS.labels(kind).inc()
        logger.info("schedule %s: %s run of %s, task %s", schedule["id"], kind, day, task_id)
        if self._publisher is not None:
            await self._publisher.publish_now([outbox_id], broker.SCORE_TASKS, message, headers)

    async def follow_up(self) -> int:
        """Follow up the runs whose task finished, one transaction each: a failed task fails the run; a
        completed one completes it, with its upload when the schedule has a target. The number done."""
        done = 0
        seen: set[tuple[int, dt.date, str]] = set()
        while done < FOLLOW_UPS_PER_TICK:
            made: bulk.BulkCreated | None = None
            outcome = "upload_error"
            async with self._pool.acquire() as conn, conn.transaction():
                run = await schedules.lock_finished(conn)
                if run is None:
                    break
                key = (run["counter"], run["day"], run["kind"])
                if key in seen:  # its upload failed in this tick: it waits for the next one
                    break
                seen.add(key)
                try:
                    async with conn.transaction():  # a savepoint: a failed upload leaves the run waiting
                        outcome, made = await self._finish(conn, run)
                except Exception as exc:
                    if errors.is_unavailable(exc) and isinstance(exc, (OSError, asyncpg.PostgresError)):
                        raise
                    logger.warning(
                        "%s run of %s, counter %s: %r", run["kind"], run["day"], run["counter"], exc
                    )
                    await schedules.note(conn, run, f"upload not created yet: {exc}")
            done += 1
            metrics.SCHEDULER_FOLLOW_UPS.labels(outcome).inc()
            if made is not None and made.outbox_id is not None and made.message is not None:
                if self._publisher is not None:
                    await self._publisher.publish_now(
                        [made.outbox_id], broker.CONVERSION_UPLOADS, made.message, None
                    )
        return done

    async def _finish(
        self, conn: asyncpg.Connection, run: asyncpg.Record
    ) -> tuple[str, bulk.BulkCreated | None]:
        """The run's status, and its upload (returned when one was stored); with the follow-up's outcome
        (metrics: uploaded, completed, failed, nothing_new)."""
        if run["task_status"] == "failed":
            await schedules.finish(conn, run, "failed", note=run["task_error"])
            return "failed", None
        if run["upload_target"] is None:
            await schedules.finish(conn, run, "completed")
            return "completed", None
        # the zone was asked for when the run was claimed: cached by now
        zone = await self._zone_of(run["counter"], self._cipher.decrypt_or_none(run["token_enc"]))
        batch_id = uuid.uuid4()
        made = await bulk.create_from_task(
            conn,
            batch_id=batch_id,
            task_id=run["task_id"],
            counter=run["counter"],
            token_enc=run["token_enc"],
            target=run["upload_target"],
            zone=zone.key,
            max_age_days=self._max_age_days,
            callback_url=run["callback_url"],
            headers=None,
        )
        if made.created:
            await schedules.finish(conn, run, "uploaded", batch_id)
            return "uploaded", made
        note = (
            f"nothing new to upload: of {made.visits} level-4+ visits, {made.already_sent} were sent before, "
            f"{made.too_old} are too old"
        )
        await schedules.finish(conn, run, "completed", None, note)
        return "nothing_new", None


class _Taken(Exception):
    """The run was claimed by another replica: roll this transaction back."""
