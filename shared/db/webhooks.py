"""Queries of the webhooks table, and the webhook submission statement."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from shared.db import Executor, rates
from shared.db.batches import INSERT_ROWS_FROM_JSON, as_json, records_json

INSERT = """
INSERT INTO webhooks (id, name, description, counter_id, token_enc, secret_hash)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, name, description, counter_id, is_active, created_at, updated_at
"""
COLUMNS = "id, name, description, counter_id, is_active, created_at, updated_at"
LIST = f"SELECT {COLUMNS} FROM webhooks ORDER BY created_at, id"
SET_ACTIVE = f"""
UPDATE webhooks SET is_active = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}
"""
SET_SECRET = "UPDATE webhooks SET secret_hash = $2, updated_at = now() WHERE id = $1 RETURNING id"
# What a submission's path and header are checked against before its body is read (gateway.webhook_guard)
AUTH = "SELECT secret_hash, is_active FROM webhooks WHERE id = $1"
# Webhook submissions, a whole group of concurrent requests in ONE statement (one round trip, one
# commit): each request's webhook; the requests with the right secret to an active webhook counted against
# `$3` requests in any 60 s (shared/db/rates.py, atomic across gateway replicas), in arrival order; and,
# for the counted requests that carry a batch, the batch with the webhook's counter and token, its rows and
# one outbox message naming the stored batches. Only a request with the right secret is counted, so nobody
# without the secret can use up a webhook's quota; a refused one is not counted either. Each request's
# `verdict`: not_found, forbidden (wrong secret), inactive, limited, stored, or counted (within the limit
# but carrying no batch: its body was refused).
# $1: JSON [[webhook_id, base64 secret digest, batch_id or null], ...]; $2: the batches' rows.
_COUNT = rates.take_sql(
    "(SELECT webhook_id::text AS subject, count(*)::int AS wanted FROM ok"
    " GROUP BY webhook_id ORDER BY webhook_id) AS wanted",
    "$3",
)
SUBMIT = f"""
WITH req AS (
    SELECT x.ord, (x.q->>0)::uuid AS webhook_id, decode(x.q->>1, 'base64') AS digest,
           (x.q->>2)::uuid AS batch_id
    FROM json_array_elements($1::json) WITH ORDINALITY AS x(q, ord)
), hook AS (
    SELECT {COLUMNS}, secret_hash, token_enc FROM webhooks WHERE id IN (SELECT webhook_id FROM req)
), ok AS (
    SELECT req.* FROM req JOIN hook ON hook.id = req.webhook_id
    WHERE hook.is_active AND hook.secret_hash = req.digest
), counted AS ({_COUNT}
), ranked AS (
    SELECT ok.ord, ok.webhook_id, ok.batch_id, counted.seconds_left,
           row_number() OVER (PARTITION BY ok.webhook_id ORDER BY ok.ord) <= counted.granted AS within
    FROM ok JOIN counted ON counted.subject = ok.webhook_id::text
), allowed AS (
    SELECT * FROM ranked WHERE within AND batch_id IS NOT NULL
), new_batches AS (
    INSERT INTO batches (id, source, webhook_id, counter_id, token_enc, status)
    SELECT allowed.batch_id, 'webhook', hook.id, hook.counter_id, hook.token_enc, 'accepted'
    FROM allowed JOIN hook ON hook.id = allowed.webhook_id
), new_rows AS (
    {INSERT_ROWS_FROM_JSON} WHERE (r->>0)::uuid IN (SELECT batch_id FROM allowed)
), message AS (
    INSERT INTO outbox (routing_key, body)
    SELECT $4, jsonb_build_object('batch_ids', jsonb_agg(batch_id ORDER BY ord)) FROM allowed
    HAVING count(*) > 0
    RETURNING id, body
)
SELECT CASE WHEN hook.id IS NULL THEN 'not_found'
            WHEN hook.secret_hash <> req.digest THEN 'forbidden'
            WHEN NOT hook.is_active THEN 'inactive'
            WHEN NOT ranked.within THEN 'limited'
            WHEN allowed.ord IS NOT NULL THEN 'stored'
            ELSE 'counted'
       END AS verdict,
       ranked.seconds_left, message.id AS outbox_id, message.body AS message
FROM req
LEFT JOIN hook ON hook.id = req.webhook_id
LEFT JOIN ranked ON ranked.ord = req.ord
LEFT JOIN allowed ON allowed.ord = req.ord
LEFT JOIN message ON true
ORDER BY req.ord
"""


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


async def list_all(db: Executor) -> list[asyncpg.Record]:
    return list(await db.fetch(LIST))


async def set_active(db: Executor, webhook_id: uuid.UUID, active: bool) -> asyncpg.Record | None:
    return await db.fetchrow(SET_ACTIVE, webhook_id, active)


async def set_secret(db: Executor, webhook_id: uuid.UUID, secret_hash: bytes) -> bool:
    return await db.fetchval(SET_SECRET, webhook_id, secret_hash) is not None


class Submission(NamedTuple):
    """One webhook request: its batch and rows (CONVERSION_COLUMNS) if it should be stored, else None/()."""

    webhook_id: uuid.UUID
    secret_digest: bytes
    batch_id: uuid.UUID | None
    records: Sequence[tuple[Any, ...]]


async def submit(
    db: Executor, group: Sequence[Submission], rate_per_minute: int, routing_key: str
) -> list[asyncpg.Record]:
    """Per submission, in order: its `verdict` (see SUBMIT), `seconds_left` until its webhook frees a slot
    (when limited), and the group's `outbox_id` and `message` (None when nothing was stored)."""
    requests = [(s.webhook_id, base64.b64encode(s.secret_digest).decode(), s.batch_id) for s in group]
    records = [record for s in group for record in s.records]
    rows = await db.fetch(SUBMIT, as_json(requests), records_json(records), rate_per_minute, routing_key)
    return list(rows)


async def auth(db: Executor, webhook_id: uuid.UUID) -> asyncpg.Record | None:
    """The webhook's `secret_hash` and `is_active`, None if it does not exist."""
    return await db.fetchrow(AUTH, webhook_id)
