"""Queries of the notifications table: the signed summaries POSTed to a callback URL (shared/notify.py).

A notification row is written by the very statement that gives a task or batch its final status (the
INSERTs below are spliced into those statements as CTEs), so a final state is never without its
notification, nor a notification without its final state. The body is the summary at that moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.db import Executor

# failing rows listed in a batch's summary (the counts say how many there are in all)
FAILED_ROWS_LISTED = 10
# final statuses, and the words the summaries use for them
TASK_FINAL = ("completed", "failed")
BATCH_FINAL = ("completed", "error")


def _iso(column: str) -> str:
    # the API's one timestamp format: ISO 8601 in UTC, microseconds, "+00:00"
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def task_note(changed: str, level4_visits: str = "NULL") -> str:
    """The notification INSERT for the tasks RETURNING'd by the CTE `changed` (id, day, counter, status,
    error, total_visits, finished_at, callback_url, parent_id) that finished and name a callback URL; a
    backfill's day never does (its parent is notified: backfill_note)."""
    return f"""
INSERT INTO notifications (kind, subject_id, url, body)
SELECT 'task', t.id, t.callback_url, jsonb_build_object(
    'event', 'task.finished', 'id', t.id, 'counter', t.counter, 'date', t.day, 'status', t.status,
    'counts', jsonb_build_object('total_visits', t.total_visits, 'level4_visits', {level4_visits}::int),
    'failed_rows', '[]'::jsonb, 'error', t.error, 'finished_at', {_iso("t.finished_at")})
FROM {changed} t
WHERE t.callback_url IS NOT NULL AND t.status IN {TASK_FINAL} AND t.parent_id IS NULL
"""


def backfill_note(changed: str) -> str:
    """The notification INSERT for the backfill parent of the day RETURNING'd by the CTE `changed` (as for
    task_note, with level4_visits) if that day finished, was the last of its days to, and the parent names
    a callback URL: one summary of the backfill, `completed` when every day is (a day counts as completed
    once a run of it is), else `failed`, with the days completed and failed and the visits of the runs
    served. The statement's snapshot shows the finishing day as it was: its own values come from
    `changed`. The caller holds the parent's row lock (tasks.lock_for_finish) from before the statement, so
    of two last days finishing at once the second sees the first finished."""
    return f"""
INSERT INTO notifications (kind, subject_id, url, body)
SELECT 'task', p.id, p.callback_url, jsonb_build_object(
    'event', 'task.finished', 'id', p.id, 'counter', p.counter, 'date', p.day, 'date_to', p.day_to,
    'status', CASE WHEN d.failed = 0 THEN 'completed' ELSE 'failed' END,
    'counts', jsonb_build_object('days', d.days, 'days_completed', d.days - d.failed, 'days_failed', d.failed,
                                 'total_visits', d.total_visits, 'level4_visits', d.level4_visits),
    'failed_rows', '[]'::jsonb,
    'error', CASE WHEN d.failed > 0 THEN d.failed || ' of ' || d.days || ' days failed' END,
    'finished_at', {_iso("c.finished_at")})
FROM {changed} c
JOIN tasks p ON p.id = c.parent_id
CROSS JOIN LATERAL (
    SELECT count(*) AS days, count(*) FILTER (WHERE x.served IS NULL) AS failed,
           sum(x.total_visits) AS total_visits, coalesce(sum(x.level4_visits), 0) AS level4_visits
    FROM (
        SELECT c.id AS served, c.total_visits, c.level4_visits WHERE c.status = 'completed'
        UNION ALL SELECT NULL, NULL, NULL WHERE c.status <> 'completed'
        UNION ALL
        SELECT s.id, s.total_visits, s.level4_visits
        FROM tasks o
        LEFT JOIN LATERAL (
            SELECT r.id, r.total_visits, r.level4_visits
            FROM (SELECT * FROM tasks WHERE id = o.id UNION ALL SELECT * FROM tasks WHERE rescore_of = o.id) r
            WHERE r.status = 'completed' ORDER BY r.run DESC LIMIT 1
        ) s ON true
        WHERE o.parent_id = p.id AND o.id <> c.id
    ) x
) d
WHERE p.callback_url IS NOT NULL AND c.status IN {TASK_FINAL}
  AND NOT EXISTS (
      SELECT 1 FROM tasks o WHERE o.parent_id = p.id AND o.id <> c.id AND o.status IN ('pending', 'running')
  )
"""


# what a batch statement's CTE must RETURN for batch_note
BATCH_RETURNING = "id, source, status, error, counter_id, task_id, webhook_id, callback_url, updated_at"


def batch_note(changed: str) -> str:
    """The notification INSERT for the batches RETURNING'd by the CTE `changed` (BATCH_RETURNING) that
    reached a final status and name a callback URL, their own or their webhook's. An upload (bulk, single)
    reports `processed` for completed, the word of the API it replaces; a webhook batch `completed`."""
    return f"""
INSERT INTO notifications (kind, subject_id, url, body)
SELECT CASE WHEN b.source = 'webhook' THEN 'batch' ELSE 'upload' END, b.id,
       coalesce(b.callback_url, w.callback_url),
       jsonb_build_object(
    'event', CASE WHEN b.source = 'webhook' THEN 'batch.finished' ELSE 'upload.finished' END,
    'id', b.id, 'counter', b.counter_id, 'webhook_id', b.webhook_id, 'task_id', b.task_id,
    'status', CASE WHEN b.source <> 'webhook' AND b.status = 'completed' THEN 'processed' ELSE b.status END,
    'counts', (SELECT jsonb_build_object(
                   'total', count(*),
                   'processed', count(*) FILTER (WHERE c.status = 'completed'),
                   'failed', count(*) FILTER (WHERE c.status = 'error'),
                   'duplicate', count(*) FILTER (WHERE c.status = 'duplicate'),
                   'ignored', count(*) FILTER (WHERE c.status = 'ignored'))
               FROM conversions c WHERE c.batch_id = b.id),
    'failed_rows', (SELECT coalesce(jsonb_agg(jsonb_build_object('row', e.idx, 'error', e.reason)
                                              ORDER BY e.idx), '[]'::jsonb)
                    FROM (SELECT idx, reason FROM conversions
                          WHERE batch_id = b.id AND status = 'error'
                          ORDER BY idx LIMIT {FAILED_ROWS_LISTED}) e),
    'error', b.error, 'finished_at', {_iso("b.updated_at")})
FROM {changed} b LEFT JOIN webhooks w ON w.id = b.webhook_id
WHERE b.status IN {BATCH_FINAL} AND coalesce(b.callback_url, w.callback_url) IS NOT NULL
"""


# due notifications, claimed for `$2` s (longer than an attempt may take) so no other sender takes them
CLAIM_DUE = """
WITH due AS (
    SELECT id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET next_attempt_at = now() + make_interval(secs => $2)
FROM due WHERE n.id = due.id
RETURNING n.id, n.kind, n.subject_id, n.url, n.body, n.attempts, n.created_at
"""
DELIVERED = """
UPDATE notifications SET status = 'delivered', attempts = attempts + 1, last_error = NULL,
       delivered_at = now(), next_attempt_at = now()
WHERE id = $1 AND status = 'pending'
"""
# a failed attempt: the next one after `$3` s, the last one at the horizon (`$4` s after the final state);
# an attempt failing at or after it ends the notification `failed`
FAILED_ATTEMPT = """
UPDATE notifications
SET attempts = attempts + 1, last_error = $2,
    status = CASE WHEN now() >= created_at + make_interval(secs => $4) THEN 'failed' ELSE 'pending' END,
    next_attempt_at = least(now() + make_interval(secs => $3), created_at + make_interval(secs => $4))
WHERE id = $1 AND status = 'pending'
RETURNING status
"""
# the latest notification of each task or batch: what its status answer shows
LATEST = """
SELECT DISTINCT ON (subject_id) subject_id, url, status, attempts, last_error, delivered_at
FROM notifications WHERE subject_id = ANY($1::uuid[])
ORDER BY subject_id, id DESC
"""


async def claim_due(db: Executor, limit: int, lease_s: float) -> list[asyncpg.Record]:
    return list(await db.fetch(CLAIM_DUE, limit, lease_s))


async def delivered(db: Executor, notification_id: int) -> None:
    await db.execute(DELIVERED, notification_id)


async def failed_attempt(
    db: Executor, notification_id: int, error: str, delay_s: float, horizon_s: float
) -> str | None:
    """Record a failed attempt; the notification's status after it (None: it was no longer pending)."""
    status: str | None = await db.fetchval(FAILED_ATTEMPT, notification_id, error, delay_s, horizon_s)
    return status


async def latest(db: Executor, subject_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    """The latest notification of each task or batch that has one."""
    return {row["subject_id"]: row for row in await db.fetch(LATEST, list(subject_ids))}
