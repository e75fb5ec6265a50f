"""Queries of the dead letters: messages that reached a .dead queue, listed and replayed by the gateway."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.db import Executor

INSERT = """
INSERT INTO dead_letters (routing_key, body, reason, headers) VALUES ($1, $2, $3, $4) RETURNING id
"""
# $1 routing key or NULL for any; $2 replayed (true / false) or NULL for either
_FILTER = """
WHERE ($1::text IS NULL OR routing_key = $1)
  AND ($2::boolean IS NULL OR (replayed_at IS NOT NULL) = $2)
"""
COUNT = "SELECT count(*) FROM dead_letters" + _FILTER
PAGE = (
    "SELECT id, routing_key, body, reason, created_at, replayed_at, replay_count FROM dead_letters"
    + _FILTER
    + "ORDER BY id DESC LIMIT $3 OFFSET $4"
)
# locked: two replays of one dead letter at once write one outbox row each, one after the other
LOCK = "SELECT id, routing_key, body FROM dead_letters WHERE id = $1 FOR UPDATE"
MARK_REPLAYED = """
UPDATE dead_letters SET replayed_at = now(), replay_count = replay_count + 1 WHERE id = $1
"""


async def add(db: Executor, routing_key: str, body: bytes, reason: str, headers: dict[str, Any]) -> int:
    return int(await db.fetchval(INSERT, routing_key, body, reason, headers))


async def count(db: Executor, routing_key: str | None, replayed: bool | None) -> int:
    return int(await db.fetchval(COUNT, routing_key, replayed))


async def page(
    db: Executor, routing_key: str | None, replayed: bool | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """Newest first."""
    return list(await db.fetch(PAGE, routing_key, replayed, limit, offset))


async def lock(conn: asyncpg.Connection, dead_letter_id: int) -> asyncpg.Record | None:
    """The dead letter, locked for this transaction; None if there is none with this id."""
    return await conn.fetchrow(LOCK, dead_letter_id)


async def mark_replayed(conn: asyncpg.Connection, dead_letter_id: int) -> None:
    await conn.execute(MARK_REPLAYED, dead_letter_id)
