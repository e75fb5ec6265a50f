"""Queries of conversion batches, their rows (conversions) and their Metrika uploads (upload_files)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from shared.db import Executor, notifications

INSERT_BATCH = """
INSERT INTO batches (id, source, task_id, webhook_id, counter_id, token_enc, status)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
CONVERSION_COLUMNS = (
    "batch_id", "idx", "id_type", "identifier", "target", "date_time", "price", "currency", "purchase_id",
    "status", "reason",
)  # fmt: skip
# Rows travel as one JSON array of arrays shaped as CONVERSION_COLUMNS (parameter $2, as text): asyncpg
# sends one string far faster than eleven typed arrays, and read as jsonb each row is parsed once (a json
# value would be re-parsed for every ->> taken from it: twice the time for a 1000-row batch).
INSERT_ROWS_FROM_JSON = """
INSERT INTO conversions (
    batch_id, idx, id_type, identifier, target, date_time, price, currency, purchase_id, status, reason
)
SELECT (r->>0)::uuid, (r->>1)::int, r->>2, r->>3, r->>4, (r->>5)::timestamptz, (r->>6)::numeric, r->>7,
       r->>8, r->>9, r->>10
FROM jsonb_array_elements($2::text::jsonb) AS r
"""
# batches, all their rows and one outbox message in ONE statement: one round trip, atomic by itself
# (foreign keys are checked at the statement's end, after every CTE ran)
STORE = f"""
WITH new_batches AS (
    INSERT INTO batches (id, source, task_id, webhook_id, counter_id, token_enc, status, callback_url)
    SELECT (b->>0)::uuid, b->>1, (b->>2)::uuid, (b->>3)::uuid, (b->>4)::bigint, decode(b->>5, 'base64'),
           b->>6, b->>7
    FROM json_array_elements($1::json) AS b
), new_rows AS ({INSERT_ROWS_FROM_JSON})
INSERT INTO outbox (routing_key, body, headers) VALUES ($3, $4, $5) RETURNING id
"""


class NewBatch(NamedTuple):
    """A batch to store; `records` are its rows shaped as CONVERSION_COLUMNS."""

    id: uuid.UUID
    source: str
    task_id: uuid.UUID | None
    webhook_id: uuid.UUID | None
    counter_id: int
    token_enc: bytes
    status: str
    records: Sequence[tuple[Any, ...]]
    callback_url: str | None = None


# `next_attempt_at`, `attempts`, `last_error`: the retry being waited for, of the upload (the batch's own
# columns) or of a status query of one of its files
STATUS = """
SELECT b.id, b.source, b.status, b.error, b.task_id, b.webhook_id, b.counter_id, b.created_at, b.updated_at,
       (SELECT count(*) FROM conversions c WHERE c.batch_id = b.id) AS total,
       (SELECT count(*) FROM conversions c WHERE c.batch_id = b.id AND c.status = 'completed') AS processed,
       (SELECT string_agg(f.metrika_upload_id, ',' ORDER BY f.id_type, f.id) FROM upload_files f
         WHERE f.batch_id = b.id AND f.metrika_upload_id IS NOT NULL) AS metrika_upload_id,
       b.attempts + (SELECT coalesce(sum(f.attempts), 0) FROM upload_files f WHERE f.batch_id = b.id)
         AS attempts,
       CASE WHEN b.last_error IS NOT NULL AND b.status IN ('accepted', 'pending') THEN b.next_attempt_at
            ELSE (SELECT min(f.next_poll_at) FROM upload_files f
                  WHERE f.batch_id = b.id AND f.last_error IS NOT NULL AND f.next_poll_at IS NOT NULL)
       END AS next_attempt_at,
       coalesce(
           CASE WHEN b.status IN ('accepted', 'pending') THEN b.last_error END,
           (SELECT f.last_error FROM upload_files f WHERE f.batch_id = b.id AND f.last_error IS NOT NULL
            ORDER BY f.updated_at DESC LIMIT 1)
       ) AS last_error,
       coalesce(b.callback_url, (SELECT w.callback_url FROM webhooks w WHERE w.id = b.webhook_id))
         AS callback_url
FROM batches b
"""
GET_STATUS = STATUS + " WHERE b.id = $1"
LIST_FOR_TASK = STATUS + " WHERE b.task_id = $1 ORDER BY b.created_at, b.id"
FILE_NOTES = """
SELECT batch_id, id_type, metrika_upload_id, line_quantity, linked_quantity, user_not_found_quantity,
       goal_not_found_quantity
FROM upload_files
WHERE batch_id = ANY($1::uuid[]) AND status = 'processed'
  AND (coalesce(user_not_found_quantity, 0) > 0 OR coalesce(goal_not_found_quantity, 0) > 0)
ORDER BY batch_id, id_type
"""
GET_BATCH = """
SELECT id, source, status, counter_id, token_enc, webhook_id, attempts, retrying_since, requeues
FROM batches WHERE id = $1
"""
# the uploader takes the batch: `accepted` becomes `pending`, and the sweeper leaves it alone for `$2`
# seconds (longer means its worker died, and the sweeper re-queues it)
TAKE = """
UPDATE batches
SET status = CASE WHEN status = 'accepted' THEN 'pending' ELSE status END,
    next_attempt_at = now() + make_interval(secs => $2),
    updated_at = CASE WHEN status = 'accepted' THEN now() ELSE updated_at END
WHERE id = $1 AND status IN ('accepted', 'pending')
"""
# a transient failure: try again at next_attempt_at; retrying_since starts the horizon's clock. An attempt
# was made, so the sweeper's count of re-queues without progress starts again (only the horizon ends it)
RETRY_LATER = """
UPDATE batches
SET attempts = attempts + 1, last_error = $2, retrying_since = coalesce(retrying_since, now()),
    next_attempt_at = now() + make_interval(secs => $3), updated_at = now(), requeues = 0
WHERE id = $1 AND status IN ('accepted', 'pending')
"""
# every file is with Metrika (or failed): nothing left for the sweeper, no retry pending
UPLOADS_DONE = """
UPDATE batches SET next_attempt_at = NULL, retrying_since = NULL, last_error = NULL, requeues = 0
WHERE id = $1
"""
# both write, in the same statement, the notification of a batch that reaches its final status
SET_STATUS = f"""
WITH changed AS (
    UPDATE batches SET status = $2, error = coalesce($3, error), updated_at = now()
    WHERE id = $1 AND status <> $2 AND status NOT IN ('completed', 'error')
    RETURNING {notifications.BATCH_RETURNING}
), noted AS ({notifications.batch_note("changed")})
SELECT count(*) FROM changed
"""
# the status its files decide; a batch in error is corrected to completed when a file Metrika had not
# finished in time is processed after all (a completed batch never changes)
SET_STATUS_FROM_FILES = f"""
WITH changed AS (
    UPDATE batches
    SET status = $2, error = CASE WHEN $2 = 'completed' THEN NULL ELSE coalesce($3, error) END,
        updated_at = now()
    WHERE id = $1 AND status <> $2 AND status <> 'completed' AND (status <> 'error' OR $2 = 'completed')
    RETURNING {notifications.BATCH_RETURNING}
), noted AS ({notifications.batch_note("changed")})
SELECT count(*) FROM changed
"""
PENDING_ROWS = """
SELECT idx, id_type, identifier, target FROM conversions
WHERE batch_id = $1 AND status = 'pending' AND file_id IS NULL ORDER BY idx
"""
FAIL_ROWS = """
UPDATE conversions SET status = 'error', reason = $3, retryable = $4
WHERE batch_id = $1 AND idx = ANY($2::int[]) AND status IN ('pending', 'uploaded')
"""
# one file per identifier type for the rows not in a file yet (a file not sent yet takes more rows); rows
# join their file in the same statement, so a redelivery re-uses the split. Runs under the batch's lock.
SPLIT = """
WITH kinds AS (
    SELECT DISTINCT id_type FROM conversions WHERE batch_id = $1 AND status = 'pending' AND file_id IS NULL
), open_files AS (
    SELECT max(id) AS id, id_type FROM upload_files WHERE batch_id = $1 AND status = 'new' GROUP BY id_type
), new_files AS (
    INSERT INTO upload_files (batch_id, id_type)
    SELECT $1, k.id_type FROM kinds k WHERE k.id_type NOT IN (SELECT id_type FROM open_files)
    RETURNING id, id_type
), files AS (
    SELECT id, id_type FROM open_files UNION ALL SELECT id, id_type FROM new_files
)
UPDATE conversions c SET file_id = files.id
FROM files WHERE c.batch_id = $1 AND c.id_type = files.id_type AND c.status = 'pending' AND c.file_id IS NULL
"""
FILES = """
SELECT id, batch_id, id_type, status, metrika_upload_id, metrika_status, error FROM upload_files
WHERE batch_id = $1 ORDER BY id_type, id
"""
FILE_ROWS = """
SELECT idx, identifier, target, date_time, price, currency FROM conversions
WHERE file_id = $1 AND status IN ('pending', 'uploaded') ORDER BY idx
"""
FILE_UPLOADING = """
UPDATE upload_files SET status = 'uploading', updated_at = now()
WHERE id = $1 AND status IN ('new', 'uploading')
"""
FILE_NOT_SENT = (
    "UPDATE upload_files SET status = 'new', updated_at = now() WHERE id = $1 AND status = 'uploading'"
)
FILE_UPLOADED = """
WITH f AS (
    UPDATE upload_files
    SET status = 'uploaded', metrika_upload_id = $2, metrika_status = $3, line_quantity = $4,
        uploaded_at = now(), next_poll_at = now() + make_interval(secs => $5), updated_at = now(),
        attempts = 0, last_error = NULL, retrying_since = NULL
    WHERE id = $1 AND status IN ('new', 'uploading')
    RETURNING id
)
UPDATE conversions SET status = 'uploaded'
FROM f WHERE conversions.file_id = f.id AND conversions.status = 'pending'
"""
# $4: whether the rows may be sent again (Metrika never had them); $5: seconds until a file that Metrika
# has but did not finish in time is checked again (NULL: the failure is final). A file failed that way is
# still followed; any other failed or processed file is final.
FILE_FAILED = """
WITH f AS (
    UPDATE upload_files SET status = 'failed', error = $2, metrika_status = coalesce($3, metrika_status),
        timed_out = $5::float8 IS NOT NULL,
        next_poll_at = now() + make_interval(secs => $5::float8), updated_at = now()
    WHERE id = $1 AND (status NOT IN ('processed', 'failed') OR (status = 'failed' AND timed_out))
    RETURNING id
)
UPDATE conversions SET status = 'error', reason = $2, retryable = $4
FROM f WHERE conversions.file_id = f.id AND conversions.status IN ('pending', 'uploaded', 'error')
"""
# Metrika is still at it: note its word, poll again in $3 s (the status moves to processing once Metrika
# has begun matching; a timed-out file keeps its failed status until Metrika finishes)
FILE_PROCESSING = """
UPDATE upload_files
SET status = CASE WHEN status = 'failed' OR $2 NOT IN ('EXPORTED', 'MATCHED') THEN status
                  ELSE 'processing' END,
    metrika_status = $2, next_poll_at = now() + make_interval(secs => $3), updated_at = now(),
    attempts = 0, last_error = NULL, retrying_since = NULL
WHERE id = $1 AND (status IN ('uploaded', 'processing') OR (status = 'failed' AND timed_out))
"""
# a status query failed for now: try again in $3 s
POLL_LATER = """
UPDATE upload_files
SET attempts = attempts + 1, last_error = $2, retrying_since = coalesce(retrying_since, now()),
    next_poll_at = now() + make_interval(secs => $3), updated_at = now()
WHERE id = $1 AND (status IN ('uploaded', 'processing') OR (status = 'failed' AND timed_out))
"""
FILE_PROCESSED = """
WITH f AS (
    UPDATE upload_files
    SET status = 'processed', metrika_status = $2, line_quantity = $3, linked_quantity = $4,
        user_not_found_quantity = $5, goal_not_found_quantity = $6, next_poll_at = NULL, updated_at = now(),
        error = NULL, timed_out = false, attempts = 0, last_error = NULL, retrying_since = NULL
    WHERE id = $1 AND (status IN ('uploaded', 'processing') OR (status = 'failed' AND timed_out))
    RETURNING id
)
UPDATE conversions SET status = 'completed', reason = NULL
FROM f WHERE conversions.file_id = f.id AND conversions.status IN ('uploaded', 'error')
"""
# claim due polls: push next_poll_at forward so other uploader replicas skip these files meanwhile
CLAIM_POLLS = """
WITH due AS (
    SELECT f.id FROM upload_files f
    WHERE (f.status IN ('uploaded', 'processing') OR (f.status = 'failed' AND f.timed_out))
      AND f.next_poll_at <= now()
    ORDER BY f.next_poll_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE upload_files f SET next_poll_at = now() + make_interval(secs => $2)
FROM due, batches b
WHERE f.id = due.id AND b.id = f.batch_id
RETURNING f.id, f.batch_id, f.id_type, f.status, f.timed_out, f.metrika_upload_id, f.uploaded_at, f.attempts,
          f.retrying_since, b.counter_id, b.token_enc
"""
FILE_STATES = "SELECT status FROM upload_files WHERE batch_id = $1"
# the sweeper: batches waiting for a retry whose time has come, or that have not moved for $2 s (their
# message was lost or dead-lettered, their worker died); claimed for $2 s so no replica re-queues twice
CLAIM_DUE = """
WITH due AS (
    SELECT id FROM batches
    WHERE status IN ('accepted', 'pending')
      AND coalesce(next_attempt_at, updated_at + make_interval(secs => $2)) <= now()
    ORDER BY coalesce(next_attempt_at, updated_at) LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE batches b SET next_attempt_at = now() + make_interval(secs => $2), requeues = b.requeues + 1
FROM due WHERE b.id = due.id
RETURNING b.id, b.requeues
"""
# batches whose files have all ended but whose own status was never brought along
STRANDED = """
SELECT b.id FROM batches b
WHERE b.status IN ('uploaded', 'processing') AND b.updated_at < now() - make_interval(secs => $2)
  AND NOT EXISTS (SELECT 1 FROM upload_files f WHERE f.batch_id = b.id
                  AND f.status IN ('new', 'uploading', 'uploaded', 'processing'))
ORDER BY b.updated_at LIMIT $1
"""
# POST .../retry: rows that failed before Metrika had them go back to pending; their files (never taken
# by Metrika as far as we know) go back to `uploading`, so the uploader first looks for them by comment
RETRY_FILES = """
UPDATE upload_files SET status = 'uploading', error = NULL, timed_out = false, next_poll_at = NULL,
       attempts = 0, last_error = NULL, retrying_since = NULL, updated_at = now()
WHERE batch_id = $1 AND status = 'failed' AND metrika_upload_id IS NULL
  AND id IN (SELECT file_id FROM conversions
             WHERE batch_id = $1 AND status = 'error' AND retryable AND file_id IS NOT NULL)
"""
RETRY_ROWS = """
UPDATE conversions SET status = 'pending', reason = NULL, retryable = false
WHERE batch_id = $1 AND status = 'error' AND retryable
"""
REOPEN = """
UPDATE batches SET status = 'pending', error = NULL, attempts = 0, next_attempt_at = NULL,
       retrying_since = NULL, last_error = NULL, requeues = 0, updated_at = now()
WHERE id = $1
"""
# a batch waiting for its next attempt is tried now
HURRY = """
UPDATE batches SET next_attempt_at = now(), updated_at = now()
WHERE id = $1 AND status IN ('accepted', 'pending')
"""
# rows still to be sent or sent, and rows that failed (a duplicate or an ignored CRM event is neither)
ROW_COUNTS = """
SELECT count(*) FILTER (WHERE status NOT IN ('error', 'duplicate', 'ignored')) AS ok,
       count(*) FILTER (WHERE status = 'error') AS failed
FROM conversions WHERE batch_id = $1
"""
# the conversion key of each row about to be sent: counter, target, identifier, and the purchase id or
# else the time. The first row to claim a key owns it; every other row with that key is a duplicate
_DISCRIMINATOR = "coalesce('purchase:' || c.purchase_id, 'time:' || extract(epoch FROM c.date_time)::bigint)"
CLAIM_KEYS = f"""
INSERT INTO conversion_keys (counter_id, target, id_type, identifier, discriminator, batch_id, idx)
SELECT b.counter_id, c.target, c.id_type, c.identifier, {_DISCRIMINATOR}, c.batch_id, c.idx
FROM conversions c JOIN batches b ON b.id = c.batch_id
WHERE c.batch_id = $1 AND c.status = 'pending' AND c.file_id IS NULL
ORDER BY c.idx
ON CONFLICT DO NOTHING
"""
MARK_DUPLICATES = f"""
UPDATE conversions c
SET status = 'duplicate',
    reason = 'duplicate of row ' || k.idx || ' of batch ' || k.batch_id || ': a conversion is sent once'
FROM batches b, conversion_keys k
WHERE c.batch_id = $1 AND c.status = 'pending' AND c.file_id IS NULL AND b.id = c.batch_id
  AND k.counter_id = b.counter_id AND k.target = c.target AND k.id_type = c.id_type
  AND k.identifier = c.identifier AND k.discriminator = {_DISCRIMINATOR}
  AND (k.batch_id, k.idx) <> (c.batch_id, c.idx)
"""


async def insert_batch(
    db: Executor,
    batch_id: uuid.UUID,
    source: str,
    counter_id: int,
    token_enc: bytes,
    status: str,
    *,
    task_id: uuid.UUID | None = None,
    webhook_id: uuid.UUID | None = None,
) -> None:
    await db.execute(INSERT_BATCH, batch_id, source, task_id, webhook_id, counter_id, token_enc, status)


async def store(
    db: Executor,
    new: Sequence[NewBatch],
    routing_key: str,
    message: dict[str, Any],
    headers: dict[str, Any] | None = None,
) -> int:
    """Store batches, their rows and one outbox row carrying `message` and `headers`; the outbox id."""
    batch_rows = [(*b[:5], base64.b64encode(b.token_enc).decode(), b.status, b.callback_url) for b in new]
    records = [record for b in new for record in b.records]
    args = (as_json(batch_rows), records_json(records), routing_key, message, headers or None)
    return int(await db.fetchval(STORE, *args))


def as_json(rows: Sequence[Sequence[Any]]) -> str:
    # str() of a UUID, an aware datetime and a Decimal is text Postgres reads back exactly
    return json.dumps(rows, default=str, ensure_ascii=False, separators=(",", ":"))


def records_json(records: Sequence[tuple[Any, ...]]) -> str:
    """Rows shaped as CONVERSION_COLUMNS as JSON, each value made plain text here (a batch's id once)
    rather than through the encoder's per-value fallback: most of the work for a 1000-row batch."""
    batch_texts: dict[Any, str] = {}
    plain = [
        (
            batch_texts.get(r[0]) or batch_texts.setdefault(r[0], str(r[0])),
            r[1],
            r[2],
            r[3],
            r[4],
            None if r[5] is None else r[5].isoformat(),
            None if r[6] is None else str(r[6]),
            r[7],
            r[8],
            r[9],
            r[10],
        )  # fmt: skip
        for r in records
    ]
    return as_json(plain)


async def insert_conversions(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY rows shaped as CONVERSION_COLUMNS."""
    await conn.copy_records_to_table("conversions", records=rows, columns=CONVERSION_COLUMNS)


async def status(db: Executor, batch_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(GET_STATUS, batch_id)


async def list_for_task(db: Executor, task_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(LIST_FOR_TASK, task_id))


async def file_notes(db: Executor, batch_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(await db.fetch(FILE_NOTES, batch_ids))


async def get(db: Executor, batch_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    """The batch; `for_update` locks its row for the caller's transaction."""
    return await db.fetchrow(GET_BATCH + (" FOR UPDATE" if for_update else ""), batch_id)


async def set_status(db: Executor, batch_id: uuid.UUID, new_status: str, error: str | None = None) -> None:
    """Move a batch that is not final yet; a final status is never overwritten."""
    await db.fetchval(SET_STATUS, batch_id, new_status, error)


async def set_status_from_files(
    db: Executor, batch_id: uuid.UUID, new_status: str, error: str | None
) -> None:
    """The status the batch's files decide (an error is corrected to completed, see the query)."""
    await db.fetchval(SET_STATUS_FROM_FILES, batch_id, new_status, error)


async def take(db: Executor, batch_id: uuid.UUID, lease_s: float) -> None:
    await db.execute(TAKE, batch_id, lease_s)


async def retry_later(db: Executor, batch_id: uuid.UUID, error: str, delay_s: float) -> None:
    await db.execute(RETRY_LATER, batch_id, error, delay_s)


async def uploads_done(db: Executor, batch_id: uuid.UUID) -> None:
    await db.execute(UPLOADS_DONE, batch_id)


async def claim_due(db: Executor, limit: int, lease_s: float) -> list[asyncpg.Record]:
    return list(await db.fetch(CLAIM_DUE, limit, lease_s))


async def stranded(db: Executor, limit: int, min_age_s: float) -> list[uuid.UUID]:
    return [row["id"] for row in await db.fetch(STRANDED, limit, min_age_s)]


async def reopen_failed_rows(conn: asyncpg.Connection, batch_id: uuid.UUID) -> int:
    """Within the caller's transaction: rows that may be sent again back to pending, with their files;
    the batch pending again when there were any. The number of rows reopened."""
    await conn.execute(RETRY_FILES, batch_id)
    reopened = int((await conn.execute(RETRY_ROWS, batch_id)).split()[-1])
    if reopened:
        await conn.execute(REOPEN, batch_id)
    return reopened


async def hurry(db: Executor, batch_id: uuid.UUID) -> bool:
    return bool(await db.execute(HURRY, batch_id) == "UPDATE 1")


async def pending_rows(db: Executor, batch_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(PENDING_ROWS, batch_id))


async def fail_rows(
    db: Executor, batch_id: uuid.UUID, indexes: list[int], reason: str, *, retryable: bool
) -> None:
    await db.execute(FAIL_ROWS, batch_id, indexes, reason, retryable)


async def split_into_files(db: Executor, batch_id: uuid.UUID) -> None:
    await db.execute(SPLIT, batch_id)


async def files(db: Executor, batch_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await db.fetch(FILES, batch_id))


async def file_rows(db: Executor, file_id: int) -> list[asyncpg.Record]:
    return list(await db.fetch(FILE_ROWS, file_id))


async def file_uploading(db: Executor, file_id: int) -> bool:
    return bool(await db.execute(FILE_UPLOADING, file_id) == "UPDATE 1")


async def file_not_sent(db: Executor, file_id: int) -> None:
    await db.execute(FILE_NOT_SENT, file_id)


async def file_uploaded(
    conn: asyncpg.Connection,
    file_id: int,
    metrika_upload_id: str,
    metrika_status: str,
    line_quantity: int | None,
    poll_after_s: float,
) -> None:
    await conn.execute(FILE_UPLOADED, file_id, metrika_upload_id, metrika_status, line_quantity, poll_after_s)


async def file_failed(
    db: Executor,
    file_id: int,
    error: str,
    metrika_status: str | None = None,
    *,
    retryable: bool,
    check_again_s: float | None = None,
) -> None:
    """End a file (and its rows) in error; `retryable` if Metrika never had it; `check_again_s` for a
    file Metrika has but did not finish in time (followed at that pace, corrected if it finishes)."""
    await db.execute(FILE_FAILED, file_id, error, metrika_status, retryable, check_again_s)


async def poll_later(db: Executor, file_id: int, error: str, delay_s: float) -> None:
    await db.execute(POLL_LATER, file_id, error, delay_s)


async def file_processing(db: Executor, file_id: int, metrika_status: str, poll_after_s: float) -> None:
    await db.execute(FILE_PROCESSING, file_id, metrika_status, poll_after_s)


async def file_processed(
    db: Executor,
    file_id: int,
    metrika_status: str,
    line_quantity: int | None,
    linked: int | None,
    user_not_found: int | None,
    goal_not_found: int | None,
) -> None:
    await db.execute(
        FILE_PROCESSED, file_id, metrika_status, line_quantity, linked, user_not_found, goal_not_found
    )


async def claim_polls(db: Executor, limit: int, lease_s: float) -> list[asyncpg.Record]:
    return list(await db.fetch(CLAIM_POLLS, limit, lease_s))


async def file_states(db: Executor, batch_id: uuid.UUID) -> list[str]:
    return [row["status"] for row in await db.fetch(FILE_STATES, batch_id)]


async def row_counts(db: Executor, batch_id: uuid.UUID) -> tuple[int, int]:
    """(rows to be sent or sent, rows failed) of a batch."""
    row = await db.fetchrow(ROW_COUNTS, batch_id)
    return int(row["ok"]), int(row["failed"])


async def set_aside_duplicates(conn: asyncpg.Connection, batch_id: uuid.UUID) -> int:
    """Claim the conversion keys of the batch's rows about to be sent; the rows whose key another row
    holds (in this batch or any other of the counter) become `duplicate`. How many did."""
    async with conn.transaction():
        await conn.execute(CLAIM_KEYS, batch_id)
        return int((await conn.execute(MARK_DUPLICATES, batch_id)).split()[-1])


# the first `limit` row errors of each batch, with the batch's count of them: a failed file fails every
# row with the same reason, and a status answer should not grow with the batch
FIRST_ROW_ERRORS = """
SELECT batch_id, idx, status, reason, errors_total FROM (
    SELECT batch_id, idx, status, reason, row_number() OVER (PARTITION BY batch_id ORDER BY idx) AS n,
           count(*) OVER (PARTITION BY batch_id) AS errors_total
    FROM conversions WHERE batch_id = ANY($1::uuid[]) AND status IN ('error', 'duplicate', 'ignored')
) e
WHERE n <= $2 ORDER BY batch_id, idx
"""


async def first_row_errors(db: Executor, batch_ids: list[uuid.UUID], limit: int) -> list[asyncpg.Record]:
    """Per batch: its first `limit` failed rows (batch_id, idx, reason) and `errors_total`."""
    return list(await db.fetch(FIRST_ROW_ERRORS, batch_ids, limit))
