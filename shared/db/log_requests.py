"""Queries of the log_requests table: every Logs API request a task created, until it is released
(canceled or cleaned), and the kept ones (a task that gave its turn back while Yandex was still preparing
its logs goes on with the same requests on its next attempt)."""

from __future__ import annotations

import uuid

import asyncpg

from shared.db import Executor

INSERT = """
INSERT INTO log_requests (counter, request_id, task_id, source) VALUES ($1, $2, $3, $4)
ON CONFLICT (counter, request_id) DO NOTHING
"""
RELEASE = """
UPDATE log_requests SET released_at = now() WHERE counter = $1 AND request_id = $2 AND released_at IS NULL
"""
KEEP = "UPDATE log_requests SET kept = true WHERE counter = $1 AND request_id = $2 AND released_at IS NULL"
# the newest kept request of a task's source, and its age in seconds
RESUMABLE = """
SELECT request_id, extract(epoch FROM now() - created_at)::float8 AS age_s FROM log_requests
WHERE task_id = $1 AND source = $2 AND released_at IS NULL AND kept
ORDER BY created_at DESC
LIMIT 1
"""
UNRELEASED = """
SELECT counter, request_id, source, kept FROM log_requests
WHERE task_id = $1 AND released_at IS NULL
ORDER BY created_at
"""
# tasks with log requests to release: left by a run that is over (or whose scorer died), except the kept
# requests of a task waiting for its next attempt
TASKS_WITH_LEFTOVERS = """
SELECT DISTINCT r.task_id FROM log_requests r JOIN tasks t ON t.id = r.task_id
WHERE r.released_at IS NULL
  AND (t.status <> 'running' OR coalesce(t.lease_until, t.updated_at) < now())
  AND NOT (r.kept AND t.status = 'pending')
LIMIT $1
"""


async def add(db: Executor, counter: int, request_id: str, task_id: uuid.UUID, source: str) -> None:
    await db.execute(INSERT, counter, request_id, task_id, source)


async def release(db: Executor, counter: int, request_id: str) -> None:
    await db.execute(RELEASE, counter, request_id)


async def keep(db: Executor, counter: int, request_id: str) -> None:
    await db.execute(KEEP, counter, request_id)


async def resumable(db: Executor, task_id: uuid.UUID, source: str) -> tuple[str, float] | None:
    row = await db.fetchrow(RESUMABLE, task_id, source)
    return None if row is None else (str(row["request_id"]), float(row["age_s"]))


async def unreleased(db: Executor, task_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(UNRELEASED, task_id))


async def tasks_with_leftovers(db: Executor, limit: int = 100) -> list[uuid.UUID]:
    return [row["task_id"] for row in await db.fetch(TASKS_WITH_LEFTOVERS, limit)]
