"""The upload of a finished run's level-4+ visits.

FALLBACK until shared.db.bulk.create_from_task (issue 12, branch i12tasks) is merged: the same signature,
done in Python through tasks.all_visits and batches.store, without leaving out visits already sent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import asyncpg

from shared import broker
from shared.conversions import Conversion, Rules
from shared.db import batches, tasks
from shared.schemas import UploadBatches


class BulkCreated(NamedTuple):
    rows: int
    new: int
    too_old: int
    already_sent: int


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
    """Store the task's level-4+ visits as a bulk upload of ClientId conversions, with its outbox message;
    nothing is stored when no visit is recent enough to send."""
    tz = ZoneInfo(zone)
    rules = Rules.current(tz, max_age_days)
    records: list[tuple[Any, ...]] = []
    too_old = 0
    for visit in await tasks.all_visits(conn, task_id):
        when = visit["date_time"].replace(tzinfo=tz).astimezone(dt.UTC)
        if rules.too_old(when):
            too_old += 1
            continue
        records.append(
            Conversion(len(records), "CLIENT_ID", visit["client_id"], target, when).record(batch_id)
        )
    if records:
        new = batches.NewBatch(
            batch_id, "bulk", task_id, None, counter, token_enc, "pending", records, callback_url
        )
        message = UploadBatches(batch_ids=[batch_id]).model_dump(mode="json")
        await batches.store(conn, [new], broker.CONVERSION_UPLOADS, message, headers)
    return BulkCreated(len(records) + too_old, len(records), too_old, 0)
