"""Queries of idempotency_keys: the request and answer behind each batch made under an Idempotency-Key."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from shared.db import Executor

# the key is new: taken by this request (True), or it was there already (no row)
CLAIM = """
INSERT INTO idempotency_keys (batch_id, request_hash, answer) VALUES ($1, $2, $3)
ON CONFLICT (batch_id) DO NOTHING
RETURNING true
"""
EARLIER = """
SELECT k.request_hash, k.answer, EXISTS (SELECT 1 FROM batches b WHERE b.id = k.batch_id) AS stored
FROM idempotency_keys k WHERE k.batch_id = $1
"""
# an earlier request under this key stored nothing (it was refused, or is still under way): this one
# takes the key over
TAKE_OVER = (
    "UPDATE idempotency_keys SET request_hash = $2, answer = $3, created_at = now() WHERE batch_id = $1"
)


async def claim(db: Executor, batch_id: uuid.UUID, request_hash: bytes, answer: dict[str, Any]) -> bool:
    return bool(await db.fetchval(CLAIM, batch_id, request_hash, answer))


async def earlier(db: Executor, batch_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(EARLIER, batch_id)


async def take_over(db: Executor, batch_id: uuid.UUID, request_hash: bytes, answer: dict[str, Any]) -> None:
    await db.execute(TAKE_OVER, batch_id, request_hash, answer)
