"""Queries of the tasks and task_visits tables."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from shared.db import Executor

INSERT = """
INSERT INTO tasks (id, day, counter, token_enc, message) VALUES ($1, $2, $3, $4, 'queued')
"""
GET = """
SELECT id, day, counter, token_enc, status, progress, message, error, attempts, total_visits,
       model_version, created_at, started_at, finished_at
FROM tasks WHERE id = $1
"""
# a redelivered or concurrent message may only restart a task that has not finished
CLAIM = """
UPDATE tasks
SET status = 'running', attempts = attempts + 1, progress = 0, message = 'starting', error = NULL,
    started_at = now(), finished_at = NULL
WHERE id = $1 AND status IN ('pending', 'running')
RETURNING id, day, counter, token_enc, attempts
"""
PROGRESS = """
UPDATE tasks SET progress = GREATEST(progress, $2), message = $3 WHERE id = $1 AND status = 'running'
"""
FAIL = """
UPDATE tasks SET status = 'failed', error = $2, message = $3, finished_at = now()
WHERE id = $1 AND status IN ('pending', 'running')
"""
CLEAR_VISITS = "DELETE FROM task_visits WHERE task_id = $1"
COMPLETE = """
UPDATE tasks SET status = 'completed', progress = 100, message = $2, total_visits = $3, model_version = $4,
       finished_at = now()
WHERE id = $1 AND status = 'running'
"""
COUNT_VISITS = "SELECT count(*) FROM task_visits WHERE task_id = $1"
PAGE_VISITS = """
SELECT visit_id, client_id, date_time, visit_duration, score, model_version
FROM task_visits WHERE task_id = $1
ORDER BY seq
LIMIT $2 OFFSET $3
"""
ALL_VISITS = """
SELECT visit_id, client_id, date_time FROM task_visits WHERE task_id = $1 ORDER BY seq
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
)


async def insert(db: Executor, task_id: uuid.UUID, day: dt.date, counter: int, token_enc: bytes) -> None:
    await db.execute(INSERT, task_id, day, counter, token_enc)


async def get(db: Executor, task_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(GET, task_id)


async def claim(db: Executor, task_id: uuid.UUID) -> asyncpg.Record | None:
    """Mark a task running; None if it is unknown or already finished."""
    return await db.fetchrow(CLAIM, task_id)


async def set_progress(db: Executor, task_id: uuid.UUID, progress: int, message: str) -> None:
    await db.execute(PROGRESS, task_id, progress, message)


async def fail(db: Executor, task_id: uuid.UUID, error: str, message: str = "failed") -> None:
    await db.execute(FAIL, task_id, error, message)


async def store_result(
    conn: asyncpg.Connection,
    task_id: uuid.UUID,
    rows: Sequence[tuple[Any, ...]],
    *,
    total_visits: int,
    model_version: str,
) -> bool:
    """Replace the task's visits and mark it completed, atomically; False if the task is not running."""
    try:
        async with conn.transaction():
            await conn.execute(CLEAR_VISITS, task_id)
            if rows:
                await conn.copy_records_to_table("task_visits", records=rows, columns=VISIT_COLUMNS)
            message = f"{len(rows)} level-4+ visits of {total_visits}"
            status = await conn.execute(COMPLETE, task_id, message, total_visits, model_version)
            if status != "UPDATE 1":
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


async def all_visits(db: Executor, task_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(ALL_VISITS, task_id))
