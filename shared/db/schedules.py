"""Queries of the schedules and schedule_runs tables (README "Schedules").

A run is claimed by inserting its (counter, day, kind) row: the primary key lets one scheduler replica
win, whatever the number of replicas; the winner inserts the run's task and its outbox message in the
same transaction. A finished run is followed up (its upload made, its status written) under its row lock,
taken with SKIP LOCKED, so two replicas never follow up the same run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, NamedTuple

import asyncpg

from shared.db import Executor


def _schedules(source: str) -> str:
    """Schedules as the API shows them, of `source` (a query of schedules rows, already limited): each
    with its latest run (of its latest day), and the latest day scored for its counter (by any schedule:
    runs outlive a deleted schedule)."""
    return f"""
SELECT s.id, s.counter, s.run_at, s.upload_target, s.paused, s.first_day, s.callback_url, s.created_at,
       s.updated_at,
       (SELECT max(d.day) FROM schedule_runs d WHERE d.counter = s.counter AND d.kind = 'score')
           AS last_scored,
       l.day AS last_day, l.kind AS last_kind, l.task_id AS last_task_id, l.status AS last_status,
       l.upload_id AS last_upload_id, l.note AS last_note, l.created_at AS last_created_at,
       (SELECT b.status FROM batches b WHERE b.id = l.upload_id) AS last_upload_status
FROM ({source}) s
LEFT JOIN LATERAL (
    SELECT * FROM schedule_runs r WHERE r.schedule_id = s.id ORDER BY r.day DESC, r.created_at DESC LIMIT 1
) l ON true
"""


INSERT = """
INSERT INTO schedules (id, counter, token_enc, run_at, upload_target, first_day, callback_url)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (counter) DO NOTHING
RETURNING id
"""
OF_COUNTER = "SELECT id FROM schedules WHERE counter = $1"
GET = _schedules("SELECT * FROM schedules WHERE id = $1")
COUNT = "SELECT count(*) FROM schedules"
# newest first: the page is taken by index (schedules_created) before each row's runs are looked up
PAGE = (
    _schedules("SELECT * FROM schedules ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2")
    + " ORDER BY s.created_at DESC, s.id DESC"
)
# $6: pause (true) or resume (false); a resume moves first_day to $7, the counter-local yesterday, so
# that the days paused are skipped (never earlier than it was)
UPDATE = """
UPDATE schedules
SET run_at = coalesce($2, run_at),
    token_enc = coalesce($3, token_enc),
    upload_target = CASE WHEN $4 THEN $5 ELSE upload_target END,
    first_day = CASE WHEN paused AND $6 IS FALSE THEN greatest(first_day, $7) ELSE first_day END,
    paused = coalesce($6, paused),
    callback_url = CASE WHEN $8 THEN $9 ELSE callback_url END,
    updated_at = now()
WHERE id = $1
RETURNING id
"""
DELETE = "DELETE FROM schedules WHERE id = $1 RETURNING id"
COUNT_RUNS = "SELECT count(*) FROM schedule_runs WHERE schedule_id = $1"
PAGE_RUNS = """
SELECT r.day, r.kind, r.task_id, r.status, r.upload_id, r.note, r.created_at, r.updated_at,
       b.status AS upload_status
FROM schedule_runs r LEFT JOIN batches b ON b.id = r.upload_id
WHERE r.schedule_id = $1
ORDER BY r.day DESC, r.created_at DESC
LIMIT $2 OFFSET $3
"""

# the scheduler
ACTIVE = """
SELECT id, counter, token_enc, run_at, first_day, callback_url FROM schedules
WHERE NOT paused ORDER BY counter
"""
# the days from $2 to $3 without a score run for counter $1 (none, but on the day a run is due)
MISSING_DAYS = """
SELECT d::date AS day FROM generate_series($2::date, $3::date, interval '1 day') AS d
WHERE NOT EXISTS (
    SELECT 1 FROM schedule_runs r WHERE r.counter = $1 AND r.day = d::date AND r.kind = 'score'
)
ORDER BY 1
"""
# only for a schedule still there and not paused (it may have changed since it was read)
CLAIM = """
INSERT INTO schedule_runs (counter, day, kind, schedule_id, task_id)
SELECT s.counter, $2, $3, s.id, $4 FROM schedules s WHERE s.id = $1 AND NOT s.paused
ON CONFLICT (counter, day, kind) DO NOTHING
RETURNING task_id
"""
# score runs in the window whose task has finished and whose day has no re-score run yet
RESCORE_DUE = """
SELECT r.day, r.task_id FROM schedule_runs r JOIN tasks t ON t.id = r.task_id
WHERE r.counter = $1 AND r.kind = 'score' AND r.day BETWEEN $2 AND $3
  AND t.status IN ('completed', 'failed')
  AND NOT EXISTS (
      SELECT 1 FROM schedule_runs x WHERE x.counter = r.counter AND x.day = r.day AND x.kind = 'rescore'
  )
ORDER BY r.day
"""
# a run whose task finished since it was last looked at (a failed task may have been retried since),
# locked for the caller's transaction; other replicas skip it
LOCK_FINISHED = """
SELECT r.counter, r.day, r.kind, r.task_id, t.status AS task_status, t.error AS task_error,
       s.id AS schedule_id, s.upload_target, s.token_enc, s.callback_url
FROM schedule_runs r
JOIN tasks t ON t.id = r.task_id
LEFT JOIN schedules s ON s.id = r.schedule_id
WHERE r.status IN ('scoring', 'failed') AND r.upload_id IS NULL
  AND (t.status = 'completed' OR (t.status = 'failed' AND r.status = 'scoring'))
ORDER BY r.updated_at
LIMIT 1
FOR UPDATE OF r SKIP LOCKED
"""
NOTE = "UPDATE schedule_runs SET note = $4, updated_at = now() WHERE counter = $1 AND day = $2 AND kind = $3"
FINISH = """
UPDATE schedule_runs SET status = $4, upload_id = $5, note = $6, updated_at = now()
WHERE counter = $1 AND day = $2 AND kind = $3
"""

# the scheduler's gauges (metrics), read at the end of each tick, each from an index: all schedules from
# their counters' (index-only), the paused from schedules_paused, the runs waiting from schedule_runs_open
SCHEDULES_BY_STATE = """
SELECT (SELECT count(*) FROM schedules) AS total, (SELECT count(*) FROM schedules WHERE paused) AS paused
"""
RUNS_WAITING = "SELECT kind, count(*) AS n FROM schedule_runs WHERE status = 'scoring' GROUP BY kind"
STATEMENT_TIMEOUT = "SET LOCAL statement_timeout = '2s'"


class NewSchedule(NamedTuple):
    id: uuid.UUID
    counter: int
    token_enc: bytes
    run_at: dt.time
    upload_target: str | None
    first_day: dt.date
    callback_url: str | None


class Change(NamedTuple):
    """A PATCH: None leaves a field as it is; `*_given` says whether a nullable field changes."""

    run_at: dt.time | None = None
    token_enc: bytes | None = None
    upload_given: bool = False
    upload_target: str | None = None
    paused: bool | None = None
    resume_first_day: dt.date | None = None
    callback_url_given: bool = False
    callback_url: str | None = None


async def insert(db: Executor, new: NewSchedule) -> uuid.UUID | None:
    """The new schedule's id; None if its counter has one already."""
    value: uuid.UUID | None = await db.fetchval(INSERT, *new)
    return value


async def of_counter(db: Executor, counter: int) -> uuid.UUID | None:
    value: uuid.UUID | None = await db.fetchval(OF_COUNTER, counter)
    return value


async def get(db: Executor, schedule_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(GET, schedule_id)


async def page(db: Executor, limit: int, offset: int) -> tuple[int, list[asyncpg.Record]]:
    total = int(await db.fetchval(COUNT))
    return total, list(await db.fetch(PAGE, limit, offset)) if total else []


async def update(db: Executor, schedule_id: uuid.UUID, change: Change) -> bool:
    """False if there is no such schedule."""
    args: tuple[Any, ...] = (
        change.run_at,
        change.token_enc,
        change.upload_given,
        change.upload_target,
        change.paused,
        change.resume_first_day,
        change.callback_url_given,
        change.callback_url,
    )
    return await db.fetchval(UPDATE, schedule_id, *args) is not None


async def delete(db: Executor, schedule_id: uuid.UUID) -> bool:
    return await db.fetchval(DELETE, schedule_id) is not None


async def page_runs(
    db: Executor, schedule_id: uuid.UUID, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    """(total, a page of the schedule's runs, latest day first)."""
    total = int(await db.fetchval(COUNT_RUNS, schedule_id))
    return total, list(await db.fetch(PAGE_RUNS, schedule_id, limit, offset)) if total else []


async def active(db: Executor) -> list[asyncpg.Record]:
    """Every schedule not paused, by counter."""
    return list(await db.fetch(ACTIVE))


async def missing_days(db: Executor, counter: int, first: dt.date, last: dt.date) -> list[dt.date]:
    """The days from `first` to `last` without a score run for `counter`, oldest first."""
    return [row["day"] for row in await db.fetch(MISSING_DAYS, counter, first, last)]


async def claim(
    conn: asyncpg.Connection, schedule_id: uuid.UUID, day: dt.date, kind: str, task_id: uuid.UUID
) -> bool:
    """Claim the (counter, day, kind) run for `task_id`; False if it is claimed already (or the schedule
    is gone or paused). The caller inserts the task in the same transaction."""
    return await conn.fetchval(CLAIM, schedule_id, day, kind, task_id) is not None


async def rescore_due(db: Executor, counter: int, first: dt.date, last: dt.date) -> list[asyncpg.Record]:
    """(day, task_id) of the score runs from `first` to `last` whose task finished and that have no
    re-score run yet, oldest first."""
    return list(await db.fetch(RESCORE_DUE, counter, first, last))


async def lock_finished(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """A run whose task finished and that is not followed up yet, locked (SKIP LOCKED) for the caller's
    transaction."""
    return await conn.fetchrow(LOCK_FINISHED)


async def finish(
    conn: asyncpg.Connection,
    run: asyncpg.Record,
    status: str,
    upload_id: uuid.UUID | None = None,
    note: str | None = None,
) -> None:
    await conn.execute(FINISH, run["counter"], run["day"], run["kind"], status, upload_id, note)


async def note(db: Executor, run: asyncpg.Record, text: str) -> None:
    """Write why a run's follow-up waits (it is tried again, after the other runs waiting)."""
    await db.execute(NOTE, run["counter"], run["day"], run["kind"], text)


async def gauges(conn: asyncpg.Connection) -> tuple[dict[str, float], dict[str, float]]:
    """({"active": n, "paused": n}, {"score": n, "rescore": n}: the runs waiting for their task), read in one
    transaction under a 2 s statement timeout."""
    async with conn.transaction(readonly=True):
        await conn.execute(STATEMENT_TIMEOUT)
        row = await conn.fetchrow(SCHEDULES_BY_STATE)
        by_state = {"active": float(row["total"] - row["paused"]), "paused": float(row["paused"])}
        waiting = {"score": 0.0, "rescore": 0.0}
        for row in await conn.fetch(RUNS_WAITING):
            waiting[row["kind"]] = float(row["n"])
    return by_state, waiting
