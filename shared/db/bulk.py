"""A bulk upload made from a task's level-4+ visits, in SQL: the batch, its rows and the uploader's outbox
message in ONE statement, without a round trip of the visits through Python.

The visits are those of the run a task serves: the latest completed run of its day (a backfill parent:
of each of its days). Visit times are counter-local (the Logs API's), converted to UTC with the zone given.
A visit already sent for the same counter and target by an earlier upload (of any run of its day: a visit
id belongs to one day) is left out; a row that failed (`error`) did not send it. A visit older than the
conversion age limit is kept as an `error` row, with the reason single conversions get (shared.conversions).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, NamedTuple

import asyncpg

from shared import broker
from shared.conversions import Rules
from shared.db import Executor
from shared.db.tasks import family
from shared.schemas import UploadBatches


def _served(task: str) -> str:
    """CTEs ending in `served`: the run each day of the task `task` serves, its latest completed one (a
    backfill parent: each of its days')."""
    return f"""
asked AS (
    SELECT id, day_to, coalesce(rescore_of, id) AS root FROM tasks WHERE id = {task}
), days AS (
    SELECT root FROM asked WHERE day_to IS NULL
    UNION ALL
    SELECT c.id FROM asked a JOIN tasks c ON c.parent_id = a.id WHERE a.day_to IS NOT NULL
), served AS (
    SELECT s.id, s.day, s.level4_visits FROM days d
    CROSS JOIN LATERAL (
        SELECT x.id, x.day, x.level4_visits FROM {family("d.root", "id, day, level4_visits, status, run")} x
        WHERE x.status = 'completed' ORDER BY x.run DESC LIMIT 1
    ) s
)"""


def _sent(visit: str, target: str, counter: str) -> str:
    """A row of an earlier upload of the counter sent this visit for this target (or will: pending)."""
    return f"""EXISTS (
        SELECT 1 FROM conversions sc JOIN batches sb ON sb.id = sc.batch_id
        WHERE sc.visit_id = {visit} AND sc.target = {target} AND sc.status <> 'error'
          AND sb.counter_id = {counter}
    )"""


def _first_sent(visit: str, target: str, counter: str) -> str:
    """_sent as a scalar subquery: probed per visit through conversions_visit (an EXISTS would become an
    anti-join hashing every row of the target first), so that the first visit to send ends the search."""
    return f"""SELECT true FROM conversions sc JOIN batches sb ON sb.id = sc.batch_id
        WHERE sc.visit_id = {visit} AND sc.target = {target} AND sc.status <> 'error'
          AND sb.counter_id = {counter} LIMIT 1"""


# The request: the batch (`pending`, with what its rows are to be made of) and the uploader's outbox
# message, if at least one served visit is neither sent before nor too old. $1 batch id, $2 task, $3
# counter, $4 token (encrypted), $5 target, $6 zone, $7 max age (days), $8 callback URL, $9 the too-old
# reason, $10 routing key, $11 message, $12 headers. Stops at the first visit to send.
CREATE = f"""
WITH {_served("$2")}, found AS (
    SELECT (SELECT count(*) FROM served) AS days,
           (SELECT coalesce(sum(level4_visits), 0) FROM served) AS visits,
           EXISTS (
               SELECT 1 FROM served s JOIN task_visits v ON v.task_id = s.id
               WHERE v.date_time AT TIME ZONE $6 >= now() - make_interval(days => $7)
                 AND NOT coalesce(({_first_sent("v.visit_id", "$5", "$3")}), false)
           ) AS anything_new
), new_batch AS (
    INSERT INTO batches (id, source, task_id, counter_id, token_enc, status, callback_url, from_task)
    SELECT $1, 'bulk', $2, $3, $4, 'pending', $8,
           jsonb_build_object('target', $5::text, 'zone', $6::text, 'max_age_days', $7::int,
                              'reason', $9::text, 'tasks', (SELECT jsonb_agg(id ORDER BY day) FROM served))
    FROM found WHERE anything_new
    RETURNING id
), new_message AS (
    INSERT INTO outbox (routing_key, body, headers) SELECT $10, $11, $12 FROM new_batch RETURNING id
)
SELECT f.days, f.visits, (SELECT id FROM new_message) AS outbox_id FROM found f
"""
# why nothing would be sent (asked on that path only): of the served visits ($1 task, $2 counter, $3
# target, $4 zone, $5 max age), those sent before and those too old
EXPLAIN = f"""
WITH {_served("$1")}, visits AS (
    SELECT v.date_time AT TIME ZONE $4 AS at, {_sent("v.visit_id", "$3", "$2")} AS sent
    FROM served s JOIN task_visits v ON v.task_id = s.id
)
SELECT count(*) AS visits, count(*) FILTER (WHERE v.sent) AS already_sent,
       count(*) FILTER (WHERE NOT v.sent AND v.at < now() - make_interval(days => $5)) AS too_old
FROM visits v
"""
# The uploader, when it takes a bulk batch made by CREATE: its rows, in ONE INSERT ... SELECT, once (the
# same statement clears from_task). Visits sent meanwhile by another upload are left out here too (two
# batches expanded at once both keep a visit: the conversion keys then send it once, see batches.py).
EXPAND = f"""
WITH b AS (
    SELECT id, counter_id, from_task ->> 'target' AS target, from_task ->> 'zone' AS zone,
           (from_task ->> 'max_age_days')::int AS max_age_days, from_task ->> 'reason' AS reason,
           from_task -> 'tasks' AS tasks
    FROM batches WHERE id = $1 AND from_task IS NOT NULL
    FOR UPDATE
), cleared AS (
    UPDATE batches SET from_task = NULL FROM b WHERE batches.id = b.id
), served AS (
    SELECT t.id::uuid AS id, t.n FROM b, jsonb_array_elements_text(b.tasks) WITH ORDINALITY AS t (id, n)
), visits AS (
    SELECT v.visit_id, v.client_id, v.date_time AT TIME ZONE b.zone AS at, s.n, v.seq
    FROM b, served s JOIN task_visits v ON v.task_id = s.id
), fresh AS (
    SELECT v.visit_id, v.client_id, v.at, v.at < now() - make_interval(days => b.max_age_days) AS too_old,
           (row_number() OVER (ORDER BY v.n, v.seq) - 1)::int AS idx
    FROM visits v, b
    WHERE NOT {_sent("v.visit_id", "b.target", "b.counter_id")}
)
INSERT INTO conversions (batch_id, idx, id_type, identifier, target, date_time, status, reason, visit_id)
SELECT b.id, f.idx, 'CLIENT_ID', f.client_id, CASE WHEN f.too_old THEN NULL ELSE b.target END,
       CASE WHEN f.too_old THEN NULL ELSE f.at END, CASE WHEN f.too_old THEN 'error' ELSE 'pending' END,
       CASE WHEN f.too_old THEN b.reason END, f.visit_id
FROM b, fresh f
"""


class BulkCreated(NamedTuple):
    """What create_from_task did. `created`: the batch and its message are stored (its rows are made by the
    uploader when it takes the batch: `rows`, `new`, `too_old`, `already_sent` are None then). Otherwise
    nothing was stored, and the counts say why: of the `visits` served (`days` days), `already_sent` were
    sent before for this counter and target, `too_old` of the others are older than the age limit (rows 0,
    new 0). `outbox_id` and `message`: the uploader's message (None when nothing was stored)."""

    created: bool
    days: int
    visits: int
    rows: int | None
    new: int | None
    too_old: int | None
    already_sent: int | None
    outbox_id: int | None
    message: dict[str, Any] | None


async def create_from_task(
    conn: asyncpg.Connection,
    *,
    batch_id: uuid.UUID,
    task_id: uuid.UUID,
    counter: int,
    token_enc: bytes,
    target: str,
    zone: str,
    max_age_days: int,
    callback_url: str | None,
    headers: dict[str, Any] | None,
) -> BulkCreated:
    """Store the bulk batch `batch_id` of the task's served level-4+ visits as ClientId conversions of
    `target` (times converted from `zone`, an IANA name), with the uploader's outbox message (publishing it
    is the caller's; the relay sends it anyway), in one statement. Nothing is stored when no visit would be
    sent: then the counts say why (a second statement, on that path only)."""
    reason = "date_time: " + too_old_reason(max_age_days)
    message = UploadBatches(batch_ids=[batch_id]).model_dump(mode="json")
    row = await conn.fetchrow(
        CREATE, batch_id, task_id, counter, token_enc, target, zone, max_age_days, callback_url, reason,
        broker.CONVERSION_UPLOADS, message, headers or None,
    )  # fmt: skip
    days, visits = int(row["days"]), int(row["visits"])
    if row["outbox_id"] is not None:
        return BulkCreated(True, days, visits, None, None, None, None, row["outbox_id"], message)
    why = await conn.fetchrow(EXPLAIN, task_id, counter, target, zone, max_age_days)
    return BulkCreated(
        False, days, int(why["visits"]), 0, 0, int(why["too_old"]), int(why["already_sent"]), None, None
    )


def too_old_reason(max_age_days: int) -> str:
    """The reason a too-old row gets, as for a single conversion (shared.conversions.Rules)."""
    return Rules(dt.UTC, dt.datetime.now(dt.UTC), dt.timedelta(days=max_age_days)).too_old_reason()


async def expand(db: Executor, batch_id: uuid.UUID) -> int:
    """The uploader: make the rows of a bulk batch stored by create_from_task, once; how many were made
    (0 for a batch expanded before, or of another kind)."""
    return int((await db.execute(EXPAND, batch_id)).split()[-1])
