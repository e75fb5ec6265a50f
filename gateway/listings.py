"""Listings under the API key: a webhook's batches (and one of them with its row errors), and uploads (the
bulk and single batches of POST /conversions/*)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import field_validator

from gateway import keys, pages
from gateway.bodies import parse_query
from gateway.conversions import status_objects
from shared import errors
from shared.db import batches, listings, webhooks

BatchStatus = Literal["accepted", "pending", "uploaded", "processing", "completed", "error"]
# an upload's final state is "processed", the word the replaced API used (a webhook batch says "completed");
# either is accepted as a filter
UploadStatus = Literal["accepted", "pending", "uploaded", "processing", "processed", "completed", "error"]
# "+00:00" arrives as " 00:00" when a client did not percent-encode the query string
_UNENCODED_PLUS = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


class BatchListQuery(pages.PageQuery):
    status: BatchStatus | None = None
    since: dt.datetime | None = None  # received at or after
    until: dt.datetime | None = None  # received before

    @field_validator("since", "until", mode="before")
    @classmethod
    def _plus_sign(cls, value: Any) -> Any:
        return _UNENCODED_PLUS.sub(r"\1+\2", value.strip()) if isinstance(value, str) else value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        """A time without an offset is in UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class UploadListQuery(pages.PageQuery):
    task_id: uuid.UUID | None = None
    status: UploadStatus | None = None


async def list_webhook_batches(request: web.Request) -> web.Response:
    """GET /webhook/offline-conversions/{webhook_id}/batches: this webhook's batches, newest first."""
    webhook_id = await _webhook_id(request)
    query = parse_query(request, BatchListQuery)
    queries = listings.webhook_batches_queries(
        webhook_id, query.status, query.since, query.until, query.limit, query.offset
    )
    total, rows = await listings.page(request.app[keys.PG_POOL], queries)
    data = [
        {
            "batch_id": str(row["id"]),
            "webhook_id": str(row["webhook_id"]),
            "status": row["status"],
            "total": row["total"],
            "processed": row["processed"],
            "received_at": pages.timestamp(row["created_at"]),
            "finished_at": _finished_at(row),
        }
        for row in rows
    ]
    return pages.answer(data, total, query)


async def webhook_batch(request: web.Request) -> web.Response:
    """GET /webhook/offline-conversions/{webhook_id}/batches/{batch_id}: the batch's status with its row
    errors, as the sender's status endpoint answers it, under the API key instead of the secret."""
    webhook_id = await _webhook_id(request)
    try:
        batch_id = uuid.UUID(request.match_info["batch_id"])
    except ValueError:
        raise errors.NotFound("Batch not found") from None
    pool = request.app[keys.PG_POOL]
    row = await batches.status(pool, batch_id)
    if row is None or row["webhook_id"] != webhook_id:
        raise errors.NotFound("Batch not found")
    return web.json_response((await status_objects(pool, [row], webhook=True))[0])


async def list_uploads(request: web.Request) -> web.Response:
    """GET /conversions: uploads (bulk from a task, single), newest first, by task and status."""
    query = parse_query(request, UploadListQuery)
    status = "completed" if query.status == "processed" else query.status
    queries = listings.uploads_queries(query.task_id, status, query.limit, query.offset)
    total, rows = await listings.page(request.app[keys.PG_POOL], queries)
    data = [
        {
            "upload_id": str(row["id"]),
            "task_id": str(row["task_id"]) if row["task_id"] else None,
            "counter": row["counter_id"],
            "target": row["target"],
            "status": "processed" if row["status"] == "completed" else row["status"],
            "total": row["total"],
            "processed": row["processed"],
            "created_at": pages.timestamp(row["created_at"]),
            "finished_at": _finished_at(row),
        }
        for row in rows
    ]
    return pages.answer(data, total, query)


def _finished_at(row: asyncpg.Record) -> str | None:
    """A batch's last change once it is final."""
    return pages.timestamp(row["updated_at"]) if row["status"] in ("completed", "error") else None


async def _webhook_id(request: web.Request) -> uuid.UUID:
    """The path's webhook, which must exist: 404 "Webhook not found" otherwise."""
    try:
        webhook_id = uuid.UUID(request.match_info["webhook_id"])
    except ValueError:
        raise errors.NotFound("Webhook not found") from None
    if await webhooks.auth(request.app[keys.PG_POOL], webhook_id) is None:
        raise errors.NotFound("Webhook not found")
    return webhook_id
