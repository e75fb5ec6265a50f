"""Queries of the webhooks table, and the webhook submission statement."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from shared.db import Executor, locks, rates
from shared.db.batches import INSERT_ROWS_FROM_JSON, as_json, records_json

COLUMNS = "id, name, description, counter_id, is_active, created_at, updated_at"
# what GET/PATCH answer: never a secret or token, only whether the Bitrix24 ones are set
LISTED = f"""{COLUMNS}, source, mapping, application_token_enc IS NOT NULL AS has_application_token,
    bitrix_webhook_url_enc IS NOT NULL AS has_bitrix_webhook_url, callback_url"""
INSERT = f"""
INSERT INTO webhooks (
    id, name, description, counter_id, token_enc, secret_hash, source, mapping, application_token_enc,
    bitrix_webhook_url_enc, callback_url
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING {LISTED}
"""
LIST = f"SELECT {LISTED} FROM webhooks ORDER BY created_at, id"
# NO KEY: a submission storing a batch for it (its foreign key check) is not held up
SOURCE_FOR_UPDATE = "SELECT source FROM webhooks WHERE id = $1 FOR NO KEY UPDATE"
# PATCH: NULL leaves a field as it is; $3, $9, $11 and $13 say whether description, application token,
# Bitrix24 URL and callback URL are given (they may be set to NULL)
UPDATE = f"""
UPDATE webhooks SET
    name = coalesce($2, name),
    description = CASE WHEN $3 THEN $4 ELSE description END,
    token_enc = coalesce($5, token_enc),
    counter_id = coalesce($6, counter_id),
    mapping = coalesce($7::jsonb, mapping),
    is_active = coalesce($8, is_active),
    application_token_enc = CASE WHEN $9 THEN $10 ELSE application_token_enc END,
    bitrix_webhook_url_enc = CASE WHEN $11 THEN $12 ELSE bitrix_webhook_url_enc END,
    callback_url = CASE WHEN $13 THEN $14 ELSE callback_url END,
    updated_at = now()
WHERE id = $1
RETURNING {LISTED}
"""
# A webhook's batches not uploaded yet: waiting (accepted/pending) with no file sent or being sent, so the
# whole batch still goes out under one token and counter (a file Metrika has is polled with the batch's)
_NOT_SENT = """
b.webhook_id = $1 AND b.status IN ('accepted', 'pending')
AND NOT EXISTS (SELECT 1 FROM upload_files f WHERE f.batch_id = b.id AND f.status <> 'new')
"""
UNSENT_BATCHES = f"SELECT b.id FROM batches b WHERE {_NOT_SENT} ORDER BY b.id"
# of the batches given, those no uploader holds now (the uploader's session lock, shared/db/locks.py);
# held by this transaction until it ends, so none is taken while its credentials change
LOCK_FREE = """
SELECT x.id FROM unnest($1::uuid[], $2::bigint[]) AS x(id, lock_key)
WHERE pg_try_advisory_xact_lock(x.lock_key)
"""
# the webhook's token and counter onto its batches given, checked again under their locks
SET_BATCH_CREDENTIALS = f"""
WITH done AS (
    UPDATE batches b SET token_enc = w.token_enc, counter_id = w.counter_id
    FROM webhooks w
    WHERE w.id = b.webhook_id AND b.id = ANY($2::uuid[]) AND {_NOT_SENT}
    RETURNING 1
)
SELECT count(*) FROM done
"""
DELETE = "DELETE FROM webhooks WHERE id = $1 RETURNING id"
SET_SECRET = "UPDATE webhooks SET secret_hash = $2, updated_at = now() WHERE id = $1 RETURNING source"
# What a submission's path and header are checked against before its body is read (gateway.webhook_guard)
AUTH = "SELECT secret_hash, is_active, source, counter_id FROM webhooks WHERE id = $1"
CREDENTIALS = "SELECT counter_id, token_enc FROM webhooks WHERE id = $1"
APPLICATION_TOKEN = "SELECT application_token_enc FROM webhooks WHERE id = $1"
# Webhook submissions, a whole group of concurrent requests in ONE statement (one round trip, one
# commit): each request's webhook; the requests with the right secret to an active webhook counted against
# `$3` requests in any 60 s (shared/db/rates.py, atomic across gateway replicas), in arrival order; and,
# for the counted requests that carry a batch, the batch with the webhook's counter and token, its rows and
# one outbox message naming the stored batches. Only a request with the right secret is counted, so nobody
# without the secret can use up a webhook's quota; a refused one is not counted either. Each request's
# `verdict`: not_found, forbidden (wrong secret), inactive, limited, stored, or counted (within the limit
# but carrying no batch: its body was refused).
# $1: JSON [[webhook_id, base64 secret digest, batch_id or null], ...]; $2: the batches' rows; $5-$7: the
# CRM requests' batch ids, content types and bodies as they came, kept with their batch; $8: the
# message's headers.
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
), new_crm_requests AS (
    INSERT INTO crm_requests (webhook_id, batch_id, content_type, body)
    SELECT allowed.webhook_id, allowed.batch_id, c.content_type, c.body
    FROM unnest($5::uuid[], $6::text[], $7::bytea[]) AS c(batch_id, content_type, body)
    JOIN allowed ON allowed.batch_id = c.batch_id
), message AS (
    INSERT INTO outbox (routing_key, body, headers)
    SELECT $4, jsonb_build_object('batch_ids', jsonb_agg(batch_id ORDER BY ord)), $8::jsonb FROM allowed
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


class NewWebhook(NamedTuple):
    id: uuid.UUID
    name: str
    description: str | None
    counter_id: int
    token_enc: bytes
    secret_hash: bytes
    source: str
    mapping: dict[str, Any] | None
    application_token_enc: bytes | None
    bitrix_webhook_url_enc: bytes | None
    callback_url: str | None = None


async def insert(db: Executor, new: NewWebhook) -> asyncpg.Record:
    return await db.fetchrow(INSERT, *new)


async def list_all(db: Executor) -> list[asyncpg.Record]:
    return list(await db.fetch(LIST))


class Change(NamedTuple):
    """A PATCH: None leaves a field as it is; `*_given`: whether a nullable field is set (maybe to None)."""

    name: str | None
    description_given: bool
    description: str | None
    token_enc: bytes | None
    counter_id: int | None
    mapping: dict[str, Any] | None
    is_active: bool | None
    application_token_given: bool
    application_token_enc: bytes | None
    bitrix_webhook_url_given: bool
    bitrix_webhook_url_enc: bytes | None
    callback_url_given: bool = False
    callback_url: str | None = None


async def source_for_update(conn: asyncpg.Connection, webhook_id: uuid.UUID) -> str | None:
    """The webhook's source, its row locked until the transaction ends; None if it does not exist."""
    source = await conn.fetchval(SOURCE_FOR_UPDATE, webhook_id)
    return None if source is None else str(source)


async def update(conn: asyncpg.Connection, webhook_id: uuid.UUID, change: Change) -> asyncpg.Record:
    return await conn.fetchrow(UPDATE, webhook_id, *change)


async def apply_credentials(conn: asyncpg.Connection, webhook_id: uuid.UUID) -> int:
    """Copy the webhook's token and counter onto its batches not uploaded yet (inside the caller's
    transaction); the number of batches changed. A batch an uploader holds right now keeps what it is
    being uploaded with."""
    ids = [row["id"] for row in await conn.fetch(UNSENT_BATCHES, webhook_id)]
    if not ids:
        return 0
    free = [row["id"] for row in await conn.fetch(LOCK_FREE, ids, [locks.key(i) for i in ids])]
    if not free:
        return 0
    return int(await conn.fetchval(SET_BATCH_CREDENTIALS, webhook_id, free))


async def delete(db: Executor, webhook_id: uuid.UUID) -> bool:
    return await db.fetchval(DELETE, webhook_id) is not None


async def set_secret(db: Executor, webhook_id: uuid.UUID, secret_hash: bytes) -> str | None:
    """The webhook's source once its secret is replaced; None if it does not exist."""
    source = await db.fetchval(SET_SECRET, webhook_id, secret_hash)
    return None if source is None else str(source)


class Submission(NamedTuple):
    """One webhook request: its batch and rows (CONVERSION_COLUMNS) if it should be stored, else None/();
    a CRM request's `raw` (content type, body) is kept with its batch, whose rows the uploader makes."""

    webhook_id: uuid.UUID
    secret_digest: bytes
    batch_id: uuid.UUID | None
    records: Sequence[tuple[Any, ...]]
    raw: tuple[str | None, bytes] | None = None


async def submit(
    db: Executor,
    group: Sequence[Submission],
    rate_per_minute: int,
    routing_key: str,
    headers: dict[str, Any] | None = None,
) -> list[asyncpg.Record]:
    """Per submission, in order: its `verdict` (see SUBMIT), `seconds_left` until its webhook frees a slot
    (when limited), and the group's `outbox_id` and `message` (None when nothing was stored); the message
    is written with `headers`."""
    requests = [(s.webhook_id, base64.b64encode(s.secret_digest).decode(), s.batch_id) for s in group]
    records = [record for s in group for record in s.records]
    crm = [s for s in group if s.raw is not None]  # the bodies travel as bytea, not inside the JSON
    rows = await db.fetch(
        SUBMIT,
        as_json(requests),
        records_json(records),
        rate_per_minute,
        routing_key,
        [s.batch_id for s in crm],
        [s.raw[0] for s in crm if s.raw is not None],
        [s.raw[1] for s in crm if s.raw is not None],
        headers or None,
    )
    return list(rows)


async def auth(db: Executor, webhook_id: uuid.UUID) -> asyncpg.Record | None:
    """The webhook's `secret_hash`, `is_active`, `source` and `counter_id`, None if it does not exist."""
    return await db.fetchrow(AUTH, webhook_id)


async def credentials(db: Executor, webhook_id: uuid.UUID) -> asyncpg.Record | None:
    """The webhook's `counter_id` and `token_enc`, None if it does not exist."""
    return await db.fetchrow(CREDENTIALS, webhook_id)


async def application_token(db: Executor, webhook_id: uuid.UUID) -> bytes | None:
    """The webhook's encrypted Bitrix24 application token, if it was given one."""
    value = await db.fetchval(APPLICATION_TOKEN, webhook_id)
    return bytes(value) if value is not None else None
