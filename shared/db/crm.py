"""Queries of crm_requests (CRM webhook bodies as they came) and crm_event_keys (each event mapped once)."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from shared.db import Executor

INSERT_REQUEST = """
INSERT INTO crm_requests (webhook_id, batch_id, content_type, body, problem) VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""
# the request behind a batch, with what mapping it needs from its webhook
OF_BATCH = """
SELECT r.id, r.webhook_id, r.content_type, r.body, r.mapped_at, w.source, w.mapping, w.bitrix_webhook_url_enc,
       b.counter_id, b.token_enc
FROM crm_requests r LEFT JOIN webhooks w ON w.id = r.webhook_id JOIN batches b ON b.id = r.batch_id
WHERE r.batch_id = $1
"""
# the event's natural key for this row, unless another row holds it: (its batch, its row)
CLAIM_EVENT = """
WITH claimed AS (
    INSERT INTO crm_event_keys (webhook_id, natural_key, batch_id, idx) VALUES ($1, $2, $3, $4)
    ON CONFLICT DO NOTHING
    RETURNING batch_id, idx
)
SELECT batch_id, idx FROM claimed
UNION ALL
SELECT batch_id, idx FROM crm_event_keys WHERE webhook_id = $1 AND natural_key = $2
LIMIT 1
"""
MAPPED = "UPDATE crm_requests SET mapped_at = now() WHERE id = $1"
# requests older than the retention, mapped (or malformed), a slice at a time
FORGET = """
DELETE FROM crm_requests WHERE id IN (
    SELECT id FROM crm_requests
    WHERE received_at < now() - make_interval(days => $1) AND (mapped_at IS NOT NULL OR batch_id IS NULL)
    ORDER BY received_at LIMIT $2
)
"""
# what a replay needs of the webhook: its source, mapping and the credentials its batches carry
REPLAY_WEBHOOK = "SELECT id, source, mapping, counter_id, token_enc FROM webhooks WHERE id = $1"
# the webhook's readable requests (a malformed one would fail again) received in [$2, $3), oldest first
KEPT = """
SELECT id, content_type, body, received_at FROM crm_requests
WHERE webhook_id = $1 AND problem IS NULL AND received_at >= $2 AND received_at < $3
ORDER BY received_at, id LIMIT $4
"""


async def insert_request(
    db: Executor,
    webhook_id: uuid.UUID,
    batch_id: uuid.UUID | None,
    content_type: str | None,
    body: bytes,
    problem: str | None,
) -> int:
    return int(await db.fetchval(INSERT_REQUEST, webhook_id, batch_id, content_type, body, problem))


async def of_batch(db: Executor, batch_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(OF_BATCH, batch_id)


async def claim_event(
    db: Executor, webhook_id: uuid.UUID, natural_key: str, batch_id: uuid.UUID, idx: int
) -> tuple[uuid.UUID, int]:
    """Who holds the event's key now: (batch_id, idx) itself if it was free."""
    while True:
        row = await db.fetchrow(CLAIM_EVENT, webhook_id, natural_key, batch_id, idx)
        if row is not None:
            return row["batch_id"], row["idx"]
        # another transaction claimed it after this statement's snapshot: ask again, it is committed now


async def mark_mapped(db: Executor, request_id: int) -> None:
    await db.execute(MAPPED, request_id)


async def replay_webhook(db: Executor, webhook_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(REPLAY_WEBHOOK, webhook_id)


async def kept(
    db: Executor, webhook_id: uuid.UUID, since: dt.datetime, until: dt.datetime, limit: int
) -> list[asyncpg.Record]:
    return list(await db.fetch(KEPT, webhook_id, since, until, limit))


async def forget_old(db: Executor, retention_days: int, limit: int = 1000) -> int:
    """Delete up to `limit` requests past the retention; how many."""
    return int((await db.execute(FORGET, retention_days, limit)).split()[-1])
