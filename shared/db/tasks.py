"""Queries of the tasks, task_visits and log_requests tables."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterable, Sequence
from typing import Any, NamedTuple

import asyncpg

from shared import broker
from shared.db import Executor, notifications

INSERT = """
INSERT INTO tasks (id, day, counter, token_enc, message, callback_url) VALUES ($1, $2, $3, $4, 'queued', $5)
"""
GET = """
SELECT id, day, counter, token_enc, status, progress, message, error, attempts, total_visits,
       model_version, created_at, started_at, finished_at, next_attempt_at, last_error, lease_until,
       retrying_since, requeues, updated_at, level4_visits, callback_url, parent_id, day_to, rescore_of, run
FROM tasks WHERE id = $1
"""
# a redelivered or concurrent message may only restart a task that has not finished (the caller holds the
# task's advisory lock, so no live scorer is running it); the lease says "a scorer has it" to the sweeper
CLAIM = """
UPDATE tasks
SET status = 'running', attempts = attempts + 1, progress = 0, message = 'starting', error = NULL,
    started_at = now(), finished_at = NULL, next_attempt_at = NULL,
    lease_until = now() + make_interval(secs => $2), updated_at = now()
WHERE id = $1 AND status IN ('pending', 'running') AND day_to IS NULL AND released
RETURNING id, day, counter, token_enc, attempts, parent_id
"""
EXTEND_LEASE = """
UPDATE tasks SET lease_until = now() + make_interval(secs => $2) WHERE id = $1 AND status = 'running'
"""
PROGRESS = """
UPDATE tasks SET progress = GREATEST(progress, $2), message = $3, updated_at = now()
WHERE id = $1 AND status = 'running'
"""
# what a finishing statement RETURNS for its notification (shared/db/notifications.py) and its backfill
_FINISHED = (
    "id, day, counter, status, error, total_visits, level4_visits, finished_at, callback_url, parent_id, "
    "released"
)


def _next_day(changed: str) -> str:
    """CTEs releasing the next day of the backfill of the day RETURNING'd by the CTE `changed` (one row, or
    none), if that day was released: the first unreleased pending day of the parent (day order) gets its
    ScoreTask outbox row, in the statement that finishes the day before it, so BACKFILL_PARALLEL days of a
    backfill are queued at a time however the scorers crash or scale. A day locked elsewhere is skipped:
    at worst none is released, and the sweeper's safety net (RELEASE) makes up for it."""
    return f"""
next_day AS (
    SELECT n.id FROM tasks n
    WHERE n.parent_id = (SELECT parent_id FROM {changed} WHERE released) AND NOT n.released
      AND n.status = 'pending'
    ORDER BY n.day LIMIT 1
    FOR UPDATE SKIP LOCKED
), freed AS (
    UPDATE tasks t SET released = true, updated_at = now() FROM next_day WHERE t.id = next_day.id
    RETURNING t.id
), queued AS (
    INSERT INTO outbox (routing_key, body)
    SELECT '{broker.SCORE_TASKS}', jsonb_build_object('task_id', freed.id) FROM freed
)"""


# FAIL and COMPLETE run after lock_for_finish in their transaction: a backfill's last day to
# finish, and only it, sees every other day ended and notifies the parent (notifications.backfill_note)
FAIL = f"""
WITH changed AS (
    UPDATE tasks SET status = 'failed', error = $2, message = $3, finished_at = now(), next_attempt_at = NULL,
           lease_until = NULL, requeues = 0, updated_at = now()
    WHERE id = $1 AND status IN ('pending', 'running')
    RETURNING {_FINISHED}
), noted AS ({notifications.task_note("changed")}),
parent_noted AS ({notifications.backfill_note("changed")}),
{_next_day("changed")}
SELECT count(*) FROM changed
"""
# a finishing task's row, then its backfill parent's, locked against the backfill's other days finishing
# at once (FOR NO KEY UPDATE: the days' foreign keys take KEY SHARE, which it leaves alone); always in that
# order (the sweeper holds task rows when it fails one), so two finishing transactions never deadlock
LOCK_TASK = "SELECT parent_id FROM tasks WHERE id = $1 FOR NO KEY UPDATE"
LOCK_PARENT = "SELECT id FROM tasks WHERE id = $1 FOR NO KEY UPDATE"
# a transient failure: back to pending until next_attempt_at, unless it has been retrying for the horizon
RETRY_LATER = """
UPDATE tasks
SET status = 'pending', message = $4, last_error = $3, next_attempt_at = now() + make_interval(secs => $2),
    retrying_since = coalesce(retrying_since, now()), lease_until = NULL, requeues = 0, updated_at = now()
WHERE id = $1 AND status = 'running'
  AND coalesce(retrying_since, now()) > now() - make_interval(secs => $5)
RETURNING next_attempt_at
"""
# POST /tasks/{id}/retry: a failed task starts afresh
RESET_FAILED = """
UPDATE tasks
SET status = 'pending', progress = 0, message = 'queued', error = NULL, attempts = 0, next_attempt_at = NULL,
    last_error = NULL, retrying_since = NULL, lease_until = NULL, requeues = 0, started_at = NULL,
    finished_at = NULL, total_visits = NULL, model_version = NULL, updated_at = now()
WHERE id = $1 AND status = 'failed' AND day_to IS NULL
RETURNING id
"""
CLEAR_VISITS = "DELETE FROM task_visits WHERE task_id = $1"
# 'pending' too: a scorer that lost its lease (the sweeper re-queued the task) still delivers a true result;
# $5: the level-4+ visits stored
COMPLETE = f"""
WITH changed AS (
    UPDATE tasks SET status = 'completed', progress = 100, message = $2, total_visits = $3,
           model_version = $4, level4_visits = $5, finished_at = now(), next_attempt_at = NULL,
           lease_until = NULL, requeues = 0, updated_at = now()
    WHERE id = $1 AND status IN ('running', 'pending')
    RETURNING {_FINISHED}
), noted AS ({notifications.task_note("changed", "$5")}),
parent_noted AS ({notifications.backfill_note("changed")}),
{_next_day("changed")}
SELECT count(*) FROM changed
"""
COUNT_VISITS = "SELECT count(*) FROM task_visits WHERE task_id = $1"
PAGE_VISITS = """
SELECT visit_id, client_id, date_time, visit_duration, score, model_version
FROM task_visits WHERE task_id = $1
ORDER BY seq
LIMIT $2 OFFSET $3
"""
# one client's visits of a task (GET /tasks/{id}/result?client_id=): the task's rows in order, filtered (no
# index of its own: it would slow every result's COPY, and a task's rows are read in order anyway)
COUNT_CLIENT_VISITS = "SELECT count(*) FROM task_visits WHERE task_id = $1 AND client_id = $2"
PAGE_CLIENT_VISITS = """
SELECT visit_id, client_id, date_time, visit_duration, score, model_version
FROM task_visits WHERE task_id = $1 AND client_id = $4
ORDER BY seq
LIMIT $2 OFFSET $3
"""
# the dashboard's charts of a task: its visits counted by hour of visit start, score decile and device
# class (NULL for rows stored before the class was kept); at most 24 x 10 x 3 groups
SUMMARY = """
SELECT extract(hour FROM date_time)::int AS hour, least(width_bucket(score, 0, 1, 10), 10) AS bucket,
       device_class, count(*) AS n
FROM task_visits WHERE task_id = $1
GROUP BY 1, 2, 3
"""
ALL_VISITS = """
SELECT visit_id, client_id, date_time FROM task_visits WHERE task_id = $1 ORDER BY seq
"""

# the sweeper: tasks whose retry is due (or whose re-queue was not picked up within a lease), tasks whose
# scorer stopped renewing the lease, and pending tasks that have not moved for $1 s (their message was
# lost or dead-lettered); SKIP LOCKED keeps two sweeping replicas off each other's rows. A backfill
# parent (day_to set) is never scored: its days are, once released (a day not released has no message)
LOCK_DUE = """
SELECT id, status, requeues, last_error, next_attempt_at IS NOT NULL AS scheduled
FROM tasks
WHERE status IN ('pending', 'running') AND day_to IS NULL AND released
  AND CASE WHEN status = 'running'
           THEN coalesce(lease_until, updated_at + make_interval(secs => $1)) < now()
           ELSE coalesce(next_attempt_at, updated_at + make_interval(secs => $1)) <= now()
      END
ORDER BY updated_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
# the next re-queue waits a lease: the message just sent has that long to be picked up
REQUEUE = """
UPDATE tasks
SET status = 'pending', next_attempt_at = now() + make_interval(secs => $2), lease_until = NULL,
    requeues = requeues + 1, message = $3, updated_at = now()
WHERE id = $1
"""

# --- backfills: a parent (day..day_to, never scored) and one child task per day ---
INSERT_PARENT = """
INSERT INTO tasks (id, day, day_to, counter, token_enc, message, callback_url)
VALUES ($1, $2, $3, $4, $5, 'backfill', $6)
"""
# the days: the first $6 released (the caller writes their messages), the others wait for their turn;
# no callback URL of their own (the parent's is notified once, by the last day to finish)
INSERT_CHILDREN = """
INSERT INTO tasks (id, day, counter, token_enc, message, parent_id, released)
SELECT d.id, d.day, $2, $3, 'queued', $1, d.n <= $6
FROM unnest($4::uuid[], $5::date[]) WITH ORDINALITY AS d (id, day, n)
"""
# a retried day waits for its turn again
UNRELEASE = "UPDATE tasks SET released = false WHERE id = ANY($1::uuid[]) AND parent_id IS NOT NULL"
# the next days of a backfill, up to $2 released and unfinished at once (the caller holds LOCK_BACKFILL's
# lock on $1, so two callers never count the same free places), each with its outbox row
RELEASE = f"""
WITH busy AS (
    SELECT count(*) AS n FROM tasks
    WHERE parent_id = $1 AND released AND status IN ('pending', 'running')
), next_days AS (
    SELECT id FROM tasks WHERE parent_id = $1 AND NOT released AND status = 'pending'
    ORDER BY day LIMIT greatest($2 - (SELECT n FROM busy), 0)
    FOR UPDATE SKIP LOCKED
), freed AS (
    UPDATE tasks t SET released = true, updated_at = now() FROM next_days WHERE t.id = next_days.id
    RETURNING t.id
)
INSERT INTO outbox (routing_key, body, headers)
SELECT '{broker.SCORE_TASKS}', jsonb_build_object('task_id', freed.id), $3 FROM freed
RETURNING id, body
"""
LOCK_BACKFILL = "SELECT id FROM tasks WHERE id = $1 AND day_to IS NOT NULL FOR NO KEY UPDATE SKIP LOCKED"
# the sweeper's safety net: backfills with days waiting for their turn and fewer than $1 released and
# unfinished (a release that a crash, or a day locked at the time, did not make)
SHORT_BACKFILLS = """
SELECT w.parent_id FROM (SELECT DISTINCT parent_id FROM tasks WHERE NOT released AND status = 'pending') w
WHERE (SELECT count(*) FROM tasks o
       WHERE o.parent_id = w.parent_id AND o.released AND o.status IN ('pending', 'running')) < $1
LIMIT $2
"""
# unpublished messages of a backfill's days (a finished day's statement wrote the next one's)
UNPUBLISHED_DAYS = f"""
SELECT o.id, o.body FROM outbox o
WHERE o.published_at IS NULL AND o.routing_key = '{broker.SCORE_TASKS}'
  AND (o.body ->> 'task_id')::uuid IN (SELECT id FROM tasks WHERE parent_id = $1 AND status = 'pending')
ORDER BY o.id
"""


def family(root: str, columns: str = "*") -> str:
    """The tasks of a day's family: its first task `root` (an SQL expression) and its re-score runs, each
    found through an index (tasks_pkey, tasks_runs)."""
    return (
        f"(SELECT {columns} FROM tasks WHERE id = {root} "
        f"UNION ALL SELECT {columns} FROM tasks WHERE rescore_of = {root})"
    )


# each day of a parent: its first task (the child), the latest run of its family and the latest completed
# one (the run served)
DAYS = f"""
SELECT c.id, c.day, l.id AS latest_id, l.run AS latest_run, l.status AS latest_status,
       l.progress AS latest_progress, l.error AS latest_error, l.started_at, l.finished_at,
       s.id AS served_id, s.run AS served_run, s.total_visits, s.level4_visits
FROM tasks c
CROSS JOIN LATERAL (
    SELECT x.id, x.run, x.status, x.progress, x.error, x.started_at, x.finished_at FROM {family("c.id")} x
    ORDER BY x.run DESC LIMIT 1
) l
LEFT JOIN LATERAL (
    SELECT x.id, x.run, x.total_visits, x.level4_visits FROM {family("c.id")} x
    WHERE x.status = 'completed' ORDER BY x.run DESC LIMIT 1
) s ON true
WHERE c.parent_id = $1
ORDER BY c.day
"""
# --- re-score runs: the family of a day is its first task (the root) and the runs whose rescore_of is it ---
LOCK_ROOT = "SELECT id FROM tasks WHERE id = $1 AND day_to IS NULL FOR UPDATE"
INSERT_RUN = f"""
INSERT INTO tasks (id, day, counter, token_enc, message, callback_url, rescore_of, run)
SELECT $2, r.day, r.counter, r.token_enc, 'queued', r.callback_url, r.id,
       (SELECT max(x.run) FROM {family("r.id", "run")} x) + 1
FROM tasks r WHERE r.id = $1
RETURNING run
"""
RUNS = f"SELECT id, run, status FROM {family('$1', 'id, run, status')} x ORDER BY run"
# the latest completed run of a family ($2: that run only)
SERVED = (
    GET.replace("FROM tasks WHERE id = $1", f"FROM {family('$1')} x WHERE status = 'completed'")
    + " AND ($2::int IS NULL OR run = $2) ORDER BY run DESC LIMIT 1"
)
# level-4+ visits counted per task, of one client (a parent's result filtered by client_id)
COUNT_CLIENT_VISITS_BY_TASK = """
SELECT task_id, count(*) AS n FROM task_visits WHERE task_id = ANY($1::uuid[]) AND client_id = $2
GROUP BY task_id
"""
SUMMARY_OF_MANY = SUMMARY.replace("WHERE task_id = $1", "WHERE task_id = ANY($1::uuid[])")

# of the tasks with log requests left behind (shared.db.log_requests), the ones a live scorer holds
# (running under a lease still valid)
LEASED = """
SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'running' AND lease_until >= now()
"""

VISIT_COLUMNS = (
    "task_id",
    "seq",
    "visit_id",
    "client_id",
    "date_time",
    "visit_duration",
    "score",
    "model_version",
    "device_class",
)


async def insert(
    db: Executor,
    task_id: uuid.UUID,
    day: dt.date,
    counter: int,
    token_enc: bytes,
    callback_url: str | None = None,
) -> None:
    await db.execute(INSERT, task_id, day, counter, token_enc, callback_url)


async def get(db: Executor, task_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(GET, task_id)


async def claim(db: Executor, task_id: uuid.UUID, lease_s: float = 60.0) -> asyncpg.Record | None:
    """Mark a task running under a lease of `lease_s`; None if it is unknown or already finished."""
    return await db.fetchrow(CLAIM, task_id, lease_s)


async def extend_lease(db: Executor, task_id: uuid.UUID, lease_s: float) -> bool:
    """Renew a running task's lease; False if it is no longer running."""
    return bool(await db.execute(EXTEND_LEASE, task_id, lease_s) == "UPDATE 1")


async def set_progress(db: Executor, task_id: uuid.UUID, progress: int, message: str) -> None:
    await db.execute(PROGRESS, task_id, progress, message)


async def fail(db: Executor, task_id: uuid.UUID, error: str, message: str = "failed") -> None:
    """End a pending or running task in failure (and write its notification, if it names a callback; a
    backfill's day: its parent's, if it is the last day to finish, and the next day's message)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            await fail(conn, task_id, error, message)
        return
    async with db.transaction():
        await lock_for_finish(db, task_id)
        await db.fetchval(FAIL, task_id, error, message)


async def lock_for_finish(conn: asyncpg.Connection, task_id: uuid.UUID) -> None:
    """In the transaction that finishes the task (FAIL, COMPLETE): lock it, then its backfill parent, if it
    has one, so that of a backfill's last days finishing at once the second sees the first finished."""
    parent_id = await conn.fetchval(LOCK_TASK, task_id)
    if parent_id is not None:
        await conn.execute(LOCK_PARENT, parent_id)


async def retry_later(
    db: Executor, task_id: uuid.UUID, delay_s: float, error: str, message: str, horizon_s: float
) -> dt.datetime | None:
    """Put a running task back to pending until now + `delay_s`; None (nothing changed) if it has been
    retrying for `horizon_s` already, or is not running."""
    value: dt.datetime | None = await db.fetchval(RETRY_LATER, task_id, delay_s, error, message, horizon_s)
    return value


async def reset_failed(db: Executor, task_id: uuid.UUID) -> bool:
    """A failed task back to pending, as new; False if it is not failed."""
    return await db.fetchval(RESET_FAILED, task_id) is not None


async def store_result(
    conn: asyncpg.Connection,
    task_id: uuid.UUID,
    rows_csv: AsyncIterable[bytes],
    count: int,
    *,
    total_visits: int,
    model_version: str,
) -> bool:
    """Replace the task's visits and mark it completed, atomically; False if it is finished already.

    `rows_csv` streams the `count` visits as PostgreSQL CSV (no header, columns VISIT_COLUMNS): COPY passes
    each piece on as it comes, in the transaction that completes the task."""
    try:
        async with conn.transaction():
            await conn.execute(CLEAR_VISITS, task_id)
            if count:
                copied = await conn.copy_to_table(
                    "task_visits", source=rows_csv, columns=VISIT_COLUMNS, format="csv"
                )
                if copied != f"COPY {count}":
                    raise ValueError(f"task {task_id}: {count} visits to store, but {copied}")
            message = f"{count} level-4+ visits of {total_visits}"
            await lock_for_finish(conn, task_id)
            if await conn.fetchval(COMPLETE, task_id, message, total_visits, model_version, count) != 1:
                # someone else finished or failed it meanwhile: keep their outcome, roll our rows back
                raise _NotRunning
    except _NotRunning:
        return False
    return True


class _NotRunning(Exception):
    pass


async def count_visits(db: Executor, task_id: uuid.UUID) -> int:
    return int(await db.fetchval(COUNT_VISITS, task_id))


async def page_visits(db: Executor, task_id: uuid.UUID, limit: int, offset: int) -> list[asyncpg.Record]:
    return list(await db.fetch(PAGE_VISITS, task_id, limit, offset))


async def count_client_visits(db: Executor, task_id: uuid.UUID, client_id: str) -> int:
    return int(await db.fetchval(COUNT_CLIENT_VISITS, task_id, client_id))


async def page_client_visits(
    db: Executor, task_id: uuid.UUID, client_id: str, limit: int, offset: int
) -> list[asyncpg.Record]:
    return list(await db.fetch(PAGE_CLIENT_VISITS, task_id, limit, offset, client_id))


async def summary(db: Executor, task_id: uuid.UUID) -> list[asyncpg.Record]:
    """(hour, bucket 1..10 of the score, device_class or None, n) groups of the task's visits."""
    return list(await db.fetch(SUMMARY, task_id))


async def all_visits(db: Executor, task_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(ALL_VISITS, task_id))


async def lock_due(conn: asyncpg.Connection, stale_after_s: float, limit: int) -> list[asyncpg.Record]:
    """Tasks the sweeper should re-queue, locked for the caller's transaction (other sweepers skip them)."""
    return list(await conn.fetch(LOCK_DUE, stale_after_s, limit))


async def requeue(conn: asyncpg.Connection, task_id: uuid.UUID, guard_s: float, message: str) -> None:
    await conn.execute(REQUEUE, task_id, guard_s, message)


async def leased(db: Executor, task_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    return {row["id"] for row in await db.fetch(LEASED, list(task_ids))}


class Day(NamedTuple):
    """One day of a backfill: its first task and its date."""

    task_id: uuid.UUID
    day: dt.date


async def insert_backfill(
    conn: asyncpg.Connection,
    parent_id: uuid.UUID,
    days: Sequence[Day],
    counter: int,
    token_enc: bytes,
    callback_url: str | None = None,
    *,
    parallel: int,
) -> None:
    """The parent (never scored) and one pending task per day, in the caller's transaction; the first
    `parallel` days (in `days`' order) are released: the caller adds their ScoreTask messages, each day
    that finishes releases the next (see _next_day). `callback_url` is the parent's: notified once, when
    its last day finishes."""
    first, last = min(d.day for d in days), max(d.day for d in days)
    await conn.execute(INSERT_PARENT, parent_id, first, last, counter, token_enc, callback_url)
    ids, dates = [d.task_id for d in days], [d.day for d in days]
    await conn.execute(INSERT_CHILDREN, parent_id, counter, token_enc, ids, dates, parallel)


async def release(
    conn: asyncpg.Connection,
    parent_id: uuid.UUID,
    parallel: int,
    headers: dict[str, Any] | None = None,
    *,
    wait: bool = False,
) -> list[tuple[int, dict[str, Any]]] | None:
    """Release the backfill's next days until `parallel` are released and unfinished, each with its
    ScoreTask outbox row (with `headers`), in the caller's transaction; (outbox id, body) of each. None if
    another transaction holds the parent (releasing them, or a day of it finishing), unless `wait`: then
    it waits for it; None also if `parent_id` is no backfill."""
    lock = LOCK_BACKFILL if not wait else LOCK_BACKFILL.removesuffix(" SKIP LOCKED")
    if await conn.fetchval(lock, parent_id) is None:
        return None
    rows = await conn.fetch(RELEASE, parent_id, parallel, headers or None)
    return [(int(row["id"]), row["body"]) for row in rows]


async def unrelease(conn: asyncpg.Connection, task_ids: Sequence[uuid.UUID]) -> None:
    """Backfill days back in the line (a retry: they wait for their turn, see release)."""
    await conn.execute(UNRELEASE, list(task_ids))


async def short_backfills(db: Executor, parallel: int, limit: int) -> list[uuid.UUID]:
    """Backfills with days waiting and fewer than `parallel` released and unfinished (SHORT_BACKFILLS)."""
    return [row["parent_id"] for row in await db.fetch(SHORT_BACKFILLS, parallel, limit)]


async def unpublished_days(db: Executor, parent_id: uuid.UUID) -> list[tuple[int, dict[str, Any]]]:
    """(outbox id, body) of the ScoreTask messages of the backfill's pending days not published yet."""
    return [(int(row["id"]), row["body"]) for row in await db.fetch(UNPUBLISHED_DAYS, parent_id)]


async def days(db: Executor, parent_id: uuid.UUID) -> list[asyncpg.Record]:
    """Each day of a backfill parent, in day order (see DAYS)."""
    return list(await db.fetch(DAYS, parent_id))


def root_of(task: Any) -> uuid.UUID:
    """The first task of a task's family (its day's run 1)."""
    root: uuid.UUID = task["rescore_of"] or task["id"]
    return root


async def insert_rescore(conn: asyncpg.Connection, task_id: uuid.UUID) -> uuid.UUID | None:
    """The next run of `task_id`'s day (same counter, day, token; rescore_of = the family's first task),
    pending; None if the task is unknown or a backfill parent. The caller adds the ScoreTask message."""
    task = await get(conn, task_id)
    if task is None or task["day_to"] is not None:
        return None
    root = root_of(task)
    new_id = uuid.uuid4()
    async with conn.transaction():  # the root's row lock orders concurrent re-scores: each counts runs anew
        if await conn.fetchval(LOCK_ROOT, root) is None:
            return None
        await conn.execute(INSERT_RUN, root, new_id)
    return new_id


async def runs(db: Executor, root: uuid.UUID) -> list[asyncpg.Record]:
    """(id, run, status) of every run of a family, run 1 first."""
    return list(await db.fetch(RUNS, root))


async def served(db: Executor, root: uuid.UUID, run: int | None = None) -> asyncpg.Record | None:
    """The family's latest completed run (or run `run`, if it is completed); None if there is none."""
    return await db.fetchrow(SERVED, root, run)


async def count_client_visits_by_task(
    db: Executor, task_ids: Sequence[uuid.UUID], client_id: str
) -> dict[uuid.UUID, int]:
    rows = await db.fetch(COUNT_CLIENT_VISITS_BY_TASK, list(task_ids), client_id)
    return {row["task_id"]: int(row["n"]) for row in rows}


async def summary_of_many(db: Executor, task_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """SUMMARY's groups over the visits of several tasks (a backfill's served runs)."""
    return list(await db.fetch(SUMMARY_OF_MANY, list(task_ids)))
