"""Listings of tasks and batches (a webhook's batches, uploads) and the search over conversion rows,
newest first.

Each filter adds one fixed condition with its own parameter, so every query is one of a few known texts
(tests/uploader/test_query_plans.py checks their plans at 100k rows)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from shared.db import Executor

_TASK_COLUMNS = """
SELECT id, day, counter, status, progress, message, error, total_visits, level4_visits, created_at,
       started_at, finished_at, parent_id, day_to, rescore_of, run
FROM tasks t"""
# a backfill parent's own status is never its days' (see gateway/tasks.py): `status` finds day tasks
TASK_CONDITIONS = {
    "status": "t.status = ${} AND t.day_to IS NULL",
    "parent_id": "t.parent_id = ${}",
    "counter": "t.counter = ${}",
    "day": "t.day = ${}",
    "day_from": "t.day >= ${}",
    "day_to": "t.day <= ${}",
}
# total and processed rows as a batch's status answer reports them (batches.STATUS); a bulk upload's target
# before the uploader made its rows (shared/db/bulk.py)
_BATCH_COLUMNS = """
SELECT b.id, b.source, b.webhook_id, b.task_id, b.counter_id, b.status, b.created_at, b.updated_at,
       (SELECT count(*) FROM conversions c WHERE c.batch_id = b.id) AS total,
       (SELECT count(*) FROM conversions c WHERE c.batch_id = b.id AND c.status = 'completed') AS processed,
       coalesce((SELECT c.target FROM conversions c WHERE c.batch_id = b.id AND c.target IS NOT NULL
                 ORDER BY c.idx LIMIT 1), b.from_task ->> 'target') AS target
FROM batches b"""
WEBHOOK_BATCH_CONDITIONS = {
    "webhook_id": "b.webhook_id = ${}",
    "status": "b.status = ${}",
    "since": "b.created_at >= ${}",
    "until": "b.created_at < ${}",
}
UPLOAD_CONDITIONS = {
    "task_id": "b.task_id = ${}",
    "status": "b.status = ${}",
}
# bulk and single batches: the partial index batches_uploads holds exactly these
_UPLOADS = "b.source IN ('bulk', 'single')"
_NEWEST_FIRST = " ORDER BY b.created_at DESC, b.id DESC"

# a row keeps one identifier, with its type; a CRM row's lead or deal id is its purchase_id
SEARCH_CONDITIONS = {
    "client_id": "c.id_type = 'CLIENT_ID' AND c.identifier = ${}",
    "user_id": "c.id_type = 'USER_ID' AND c.identifier = ${}",
    "yclid": "c.id_type = 'YCLID' AND c.identifier = ${}",
    "purchase_id": "c.purchase_id = ${}",
    "crm_id": "c.purchase_id = ${} AND r.batch_id IS NOT NULL",
}
_SEARCH_FROM = """
FROM conversions c JOIN batches b ON b.id = c.batch_id LEFT JOIN crm_requests r ON r.batch_id = c.batch_id
"""
_SEARCH_COLUMNS = """
SELECT b.source, c.batch_id, b.webhook_id, c.idx, c.id_type, c.identifier, c.purchase_id,
       r.batch_id IS NOT NULL AS from_crm, c.target, c.status, c.reason, b.created_at
"""


def where(conditions: Mapping[str, str], filters: Mapping[str, Any], *always: str) -> tuple[str, list[Any]]:
    """` WHERE ...` (or "") and its arguments: `always`, then a condition per filter given (not None)."""
    parts = list(always)
    args: list[Any] = []
    for name, condition in conditions.items():
        value = filters.get(name)
        if value is not None:
            args.append(value)
            parts.append(condition.format(len(args)))
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


def _paged(query: str, args: list[Any], limit: int, offset: int) -> tuple[str, list[Any]]:
    n = len(args)
    return f"{query} LIMIT ${n + 1} OFFSET ${n + 2}", [*args, limit, offset]


def tasks_queries(
    filters: Mapping[str, Any], limit: int, offset: int
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]]:
    """(count query, page query), each with its arguments; `filters` by the names of TASK_CONDITIONS."""
    clause, args = where(TASK_CONDITIONS, filters)
    count = ("SELECT count(*) FROM tasks t" + clause, args)
    order = " ORDER BY t.created_at DESC, t.id DESC"
    return count, _paged(_TASK_COLUMNS + clause + order, args, limit, offset)


def webhook_batches_queries(
    webhook_id: uuid.UUID,
    status: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    offset: int,
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]]:
    filters = {"webhook_id": webhook_id, "status": status, "since": since, "until": until}
    clause, args = where(WEBHOOK_BATCH_CONDITIONS, filters)
    count = ("SELECT count(*) FROM batches b" + clause, args)
    return count, _paged(_BATCH_COLUMNS + clause + _NEWEST_FIRST, args, limit, offset)


def uploads_queries(
    task_id: uuid.UUID | None, status: str | None, limit: int, offset: int
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]]:
    clause, args = where(UPLOAD_CONDITIONS, {"task_id": task_id, "status": status}, _UPLOADS)
    count = ("SELECT count(*) FROM batches b" + clause, args)
    return count, _paged(_BATCH_COLUMNS + clause + _NEWEST_FIRST, args, limit, offset)


def search_queries(
    filters: Mapping[str, str | None], limit: int, offset: int
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]]:
    clause, args = where(SEARCH_CONDITIONS, filters)
    count = ("SELECT count(*)" + _SEARCH_FROM + clause, args)
    order = " ORDER BY b.created_at DESC, c.batch_id DESC, c.idx"
    return count, _paged(_SEARCH_COLUMNS + _SEARCH_FROM + clause + order, args, limit, offset)


async def page(
    db: Executor, queries: tuple[tuple[str, list[Any]], tuple[str, list[Any]]]
) -> tuple[int, list[asyncpg.Record]]:
    """(total, the page's rows) of one of the listings above."""
    (count_query, count_args), (page_query, page_args) = queries
    total = int(await db.fetchval(count_query, *count_args))
    rows = list(await db.fetch(page_query, *page_args)) if total else []
    return total, rows
