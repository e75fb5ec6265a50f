"""Queries of crm_requests (CRM webhook bodies as they came) and crm_event_keys (each event mapped once)."""

from __future__ import annotations

import uuid

import asyncpg

from shared.db import Executor

INSERT_REQUEST = """
INSERT INTO crm_requests (webhook_id, batch_id, content_type, body, problem) VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""
# the request behind a batch, with what mapping it needs from its webhook
OF_BATCH = """
SELECT r.id, r.webhook_id, r.content_type, r.body, r.mapped_at, w.source, w.mapping, w.bitrix_webhook_url_enc
FROM crm_requests r LEFT JOIN webhooks w ON w.id = r.webhook_id
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
