"""Queries of the transactional outbox."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.db import Executor

INSERT = "INSERT INTO outbox (routing_key, body) VALUES ($1, $2) RETURNING id"
# SKIP LOCKED lets several gateway replicas relay side by side without publishing a row twice at once
LOCK_PENDING = """
SELECT id, routing_key, body FROM outbox
WHERE published_at IS NULL AND ($1::bigint IS NULL OR id = $1)
ORDER BY id LIMIT $2
FOR UPDATE SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
COUNT_PENDING = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


async def add(db: Executor, routing_key: str, body: dict[str, Any]) -> int:
    return int(await db.fetchval(INSERT, routing_key, body))


async def lock_pending(
    conn: asyncpg.Connection, limit: int, only_id: int | None = None
) -> list[asyncpg.Record]:
    return list(await conn.fetch(LOCK_PENDING, only_id, limit))


async def mark_published(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute(MARK_PUBLISHED, ids)


async def count_pending(db: Executor) -> int:
    return int(await db.fetchval(COUNT_PENDING))
