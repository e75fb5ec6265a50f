"""Queries of the webhooks and webhook_rate tables."""

from __future__ import annotations

import uuid

import asyncpg

from shared.db import Executor

INSERT = """
INSERT INTO webhooks (id, name, description, counter_id, token_enc, secret_hash)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, description, counter_id, is_active, created_at, updated_at
"""
COLUMNS = "id, name, description, counter_id, is_active, created_at, updated_at"
GET = f"SELECT {COLUMNS}, secret_hash, token_enc FROM webhooks WHERE id = $1"
LIST = f"SELECT {COLUMNS} FROM webhooks ORDER BY created_at, id"
SET_ACTIVE = f"""
UPDATE webhooks SET is_active = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}
"""
SET_SECRET = "UPDATE webhooks SET secret_hash = $2, updated_at = now() WHERE id = $1 RETURNING id"
# The webhook, and its request counted in a fixed one-minute window (atomic across gateway replicas),
# in one round trip. Only a request carrying the right secret to an active webhook is counted, so
# nobody without the secret can use up a webhook's quota; the caller still checks the secret itself.
GET_AND_COUNT = f"""
WITH hook AS (
    SELECT {COLUMNS}, secret_hash, token_enc FROM webhooks WHERE id = $1
), counted AS (
    INSERT INTO webhook_rate (webhook_id, window_start, hits)
    SELECT id, date_trunc('minute', now()), 1 FROM hook WHERE is_active AND secret_hash = $2
    ON CONFLICT (webhook_id, window_start) DO UPDATE SET hits = webhook_rate.hits + 1
    RETURNING hits, EXTRACT(EPOCH FROM (window_start + interval '1 minute' - now()))::float AS seconds_left
)
SELECT hook.*, counted.hits, counted.seconds_left FROM hook LEFT JOIN counted ON true
"""
PRUNE_RATE = "DELETE FROM webhook_rate WHERE window_start < now() - interval '5 minutes'"


async def insert(
    db: Executor,
    webhook_id: uuid.UUID,
    name: str,
    description: str | None,
    counter_id: int,
    token_enc: bytes,
    secret_hash: bytes,
) -> asyncpg.Record:
    return await db.fetchrow(INSERT, webhook_id, name, description, counter_id, token_enc, secret_hash)


async def get(db: Executor, webhook_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(GET, webhook_id)


async def list_all(db: Executor) -> list[asyncpg.Record]:
    return list(await db.fetch(LIST))


async def set_active(db: Executor, webhook_id: uuid.UUID, active: bool) -> asyncpg.Record | None:
    return await db.fetchrow(SET_ACTIVE, webhook_id, active)


async def set_secret(db: Executor, webhook_id: uuid.UUID, secret_hash: bytes) -> bool:
    return await db.fetchval(SET_SECRET, webhook_id, secret_hash) is not None


async def get_and_count(db: Executor, webhook_id: uuid.UUID, secret_hash: bytes) -> asyncpg.Record | None:
    """The webhook (None if unknown) with `hits` this minute and `seconds_left` in it, both None when the
    request was not counted (wrong secret or inactive webhook)."""
    return await db.fetchrow(GET_AND_COUNT, webhook_id, secret_hash)


async def prune_rate(db: Executor) -> None:
    await db.execute(PRUNE_RATE)
