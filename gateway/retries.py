"""Retry by hand: send again the rows of an upload (or webhook batch) that failed before Metrika had them.

Rows Metrika took (processed, not linked, LINKAGE_FAILURE) and rows refused at the door are never sent
again; a file whose answer was lost is first looked for by its comment, so nothing is sent twice.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway import keys
from shared import broker, errors, logs
from shared.db import batches, outbox
from shared.schemas import UploadBatches


async def retry_upload(request: web.Request) -> web.Response:
    """POST /conversions/{upload_id}/retry"""
    batch_id = _uuid(request.match_info["upload_id"], "Upload not found")
    return await _retry(request, batch_id, "upload_id", "Upload not found", webhook_id=None)


async def retry_webhook_batch(request: web.Request) -> web.Response:
    """POST /webhook/offline-conversions/{webhook_id}/batches/{batch_id}/retry"""
    webhook_id = _uuid(request.match_info["webhook_id"], "Webhook not found")
    batch_id = _uuid(request.match_info["batch_id"], "Batch not found")
    return await _retry(request, batch_id, "batch_id", "Batch not found", webhook_id=webhook_id)


async def _retry(
    request: web.Request, batch_id: uuid.UUID, id_key: str, not_found: str, *, webhook_id: uuid.UUID | None
) -> web.Response:
    pool = request.app[keys.PG_POOL]
    message = UploadBatches(batch_ids=[batch_id]).model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        batch = await batches.get(conn, batch_id, for_update=True)
        if batch is None or (webhook_id is not None and batch["webhook_id"] != webhook_id):
            raise errors.NotFound(not_found)
        if batch["status"] in ("accepted", "pending"):
            # waiting for its next attempt (or about to be taken): try now
            await batches.hurry(conn, batch_id)
            reopened = 0
        else:
            reopened = await batches.reopen_failed_rows(conn, batch_id)
            if not reopened:
                raise errors.Conflict(
                    f"Nothing to retry: the batch is {batch['status']} and none of its rows failed before "
                    "Metrika had them (rows Metrika took, or refused at the door, are never sent again)"
                )
        headers = logs.message_headers()
        outbox_id = await outbox.add(conn, broker.CONVERSION_UPLOADS, message, headers)
    await request.app[keys.RELAY].publish_now([outbox_id], broker.CONVERSION_UPLOADS, message, headers)
    return web.json_response({id_key: str(batch_id), "status": "pending", "retried": reopened}, status=202)


def _uuid(raw: str, not_found: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise errors.NotFound(not_found) from None
