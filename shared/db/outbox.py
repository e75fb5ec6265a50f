"""Queries of the transactional outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from shared.db import Executor

INSERT = "INSERT INTO outbox (routing_key, body, headers) VALUES ($1, $2, $3) RETURNING id"
# one row per body, in order (a backfill's days); each id returned with its body
INSERT_MANY = """
INSERT INTO outbox (routing_key, body, headers)
SELECT $1, b.body, $3 FROM unnest($2::jsonb[]) WITH ORDINALITY AS b (body, n) ORDER BY b.n
RETURNING id, body
"""
# SKIP LOCKED lets several gateway replicas relay side by side without publishing a row twice at once
LOCK_PENDING = """
SELECT id, routing_key, body, headers FROM outbox
WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $2) AND id <> ALL($3::bigint[])
ORDER BY id LIMIT $1
FOR UPDATE SKIP LOCKED
"""
# a row keeps its first mark (a mark retried after a lost answer changes nothing)
MARK_PUBLISHED = (
    "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) AND published_at IS NULL"
)
COUNT_PENDING = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


async def add(
    db: Executor, routing_key: str, body: dict[str, Any], headers: dict[str, Any] | None = None
) -> int:
    """A row to publish `body` under `routing_key` with `headers` (shared.logs.message_headers)."""
    return int(await db.fetchval(INSERT, routing_key, body, headers or None))


async def add_many(
    db: Executor, routing_key: str, bodies: Sequence[dict[str, Any]], headers: dict[str, Any] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """A row per body (one statement); (id, body) of each."""
    rows = await db.fetch(INSERT_MANY, routing_key, list(bodies), headers or None)
    return [(int(row["id"]), row["body"]) for row in rows]


async def lock_pending(
    conn: asyncpg.Connection, limit: int, min_age_s: float, exclude: Sequence[int] = ()
) -> list[asyncpg.Record]:
    """Unpublished rows older than `min_age_s` and not in `exclude`, locked for this transaction
    (other relays skip them)."""
    return list(await conn.fetch(LOCK_PENDING, limit, min_age_s, list(exclude)))


async def mark_published(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute(MARK_PUBLISHED, ids)


async def count_pending(db: Executor) -> int:
    return int(await db.fetchval(COUNT_PENDING))
