"""Queries of the webhooks and webhook_rate tables."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

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
# Each request's webhook, and the request counted in a fixed one-minute window (atomic across gateway
# replicas), for a whole group of requests in one round trip. Only a request carrying the right secret to
# an active webhook is counted, so nobody without the secret can use up a webhook's quota; the caller
# still checks the secret itself. Requests to one webhook in one group get consecutive hit numbers.
GET_AND_COUNT = f"""
WITH req AS (
    SELECT * FROM unnest($1::uuid[], $2::bytea[]) WITH ORDINALITY AS r(webhook_id, digest, ord)
), hook AS (
    SELECT {COLUMNS}, secret_hash, token_enc FROM webhooks WHERE id IN (SELECT webhook_id FROM req)
), ok AS (
    SELECT req.ord, req.webhook_id FROM req JOIN hook ON hook.id = req.webhook_id
    WHERE hook.is_active AND hook.secret_hash = req.digest
), counted AS (
    INSERT INTO webhook_rate (webhook_id, window_start, hits)
    SELECT webhook_id, date_trunc('minute', now()), count(*) FROM ok GROUP BY webhook_id ORDER BY webhook_id
    ON CONFLICT (webhook_id, window_start) DO UPDATE SET hits = webhook_rate.hits + EXCLUDED.hits
    RETURNING webhook_id, hits,
              EXTRACT(EPOCH FROM (window_start + interval '1 minute' - now()))::float AS seconds_left
), ranked AS (
    SELECT ok.ord, counted.hits - count(*) OVER w + row_number() OVER (w ORDER BY ok.ord) AS hits,
           counted.seconds_left
    FROM ok JOIN counted USING (webhook_id)
    WINDOW w AS (PARTITION BY ok.webhook_id)
)
SELECT hook.*, ranked.hits, ranked.seconds_left, hook.id IS NOT NULL AS found
FROM req LEFT JOIN hook ON hook.id = req.webhook_id LEFT JOIN ranked ON ranked.ord = req.ord
ORDER BY req.ord
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


async def get_and_count(
    db: Executor, requests: Sequence[tuple[uuid.UUID, bytes]]
) -> list[asyncpg.Record | None]:
    """Per (webhook_id, secret digest): the webhook (None if unknown) with `hits` this minute and
    `seconds_left` in it, both None when the request was not counted (wrong secret or inactive webhook)."""
    ids, digests = zip(*requests, strict=True) if requests else ((), ())
    rows = await db.fetch(GET_AND_COUNT, list(ids), list(digests))
    return [row if row["found"] else None for row in rows]


async def prune_rate(db: Executor) -> None:
    await db.execute(PRUNE_RATE)
