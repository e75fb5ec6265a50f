"""`POST /webhook/offline-conversions/{id}/replay`: run a CRM webhook's kept requests through its mapping
as it is now (after a mapping was fixed, say), or with `dry_run` only tell what that would make.

A replay makes a new batch per request, which the uploader maps as it maps any (uploader/crm.py). Nothing
already uploaded is sent again: an event that made a conversion before is a `duplicate` (its natural key),
and so is a conversion sent before (its conversion key); events ignored before may now convert.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway import keys
from gateway.bodies import parse_body
from shared import broker, errors, logs
from shared.crm import forms
from shared.crm.events import CrmEvent
from shared.crm.mapping import CrmMapping, Ignored, map_event
from shared.crm.requests import read_request
from shared.db import batches, crm
from shared.schemas import UploadBatches

MAX_REQUESTS = 1000  # per replay: a wider window is replayed in several calls
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: dt.datetime | None = Field(None, alias="from")
    until: dt.datetime | None = Field(None, alias="to")
    dry_run: bool = False


async def replay(request: web.Request) -> web.Response:
    try:
        webhook_id = uuid.UUID(request.match_info["webhook_id"])
    except ValueError:
        raise errors.NotFound("Webhook not found") from None
    body = await parse_body(request, ReplayBody)
    pool = request.app[keys.PG_POOL]
    webhook = await crm.replay_webhook(pool, webhook_id)
    if webhook is None:
        raise errors.NotFound("Webhook not found")
    if webhook["source"] == "json":
        raise errors.Conflict("Only amocrm and bitrix24 webhooks keep their requests to replay")
    since = _aware(body.since) or _EPOCH
    until = _aware(body.until) or dt.datetime.now(dt.UTC)
    kept = await crm.kept(pool, webhook_id, since, until, MAX_REQUESTS)
    if body.dry_run:
        return web.json_response(_dry_run(webhook, kept))
    counter, token_enc = webhook["counter_id"], webhook["token_enc"]
    new = [
        batches.NewBatch(uuid.uuid4(), "webhook", None, webhook_id, counter, token_enc, "accepted", [])
        for _ in kept
    ]
    message = UploadBatches(batch_ids=[b.id for b in new]).model_dump(mode="json") if new else None
    if new and message is not None:
        async with pool.acquire() as conn, conn.transaction():
            headers = logs.message_headers()
            outbox_id = await batches.store(conn, new, broker.CONVERSION_UPLOADS, message, headers)
            for batch, row in zip(new, kept, strict=True):
                await crm.insert_request(
                    conn, webhook_id, batch.id, row["content_type"], bytes(row["body"]), None
                )
        await request.app[keys.RELAY].publish_now([outbox_id], broker.CONVERSION_UPLOADS, message, headers)
    answer = {"dry_run": False, "requests": len(kept), "batch_ids": [str(b.id) for b in new]}
    return web.json_response(answer, status=202)


def _dry_run(webhook: Any, kept: list[Any]) -> dict[str, Any]:
    """What the mapping as it is makes of the kept requests (a Bitrix24 event needs its deal or lead
    looked up, which a dry run does not do: those are counted apart)."""
    mapping = CrmMapping.model_validate(webhook["mapping"]) if webhook["mapping"] else None
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for row in kept:
        for event in _events(webhook["source"], bytes(row["body"]), row["content_type"]):
            counts["events"] += 1
            if event.source == "bitrix24":
                counts["need_lookup"] += 1
                continue
            mapped = map_event(event, mapping, None) if mapping else Ignored("the webhook has no mapping")
            if isinstance(mapped, Ignored):
                counts["ignored"] += 1
                reasons[mapped.reason] += 1
            else:
                counts["conversions"] += 1
    return {
        "dry_run": True,
        "requests": len(kept),
        "events": counts["events"],
        "conversions": counts["conversions"],
        "ignored": counts["ignored"],
        "need_lookup": counts["need_lookup"],
        "ignored_reasons": [{"reason": r, "events": n} for r, n in reasons.most_common(20)],
    }


def _events(source: str, body: bytes, content_type: str | None) -> list[CrmEvent]:
    try:
        return read_request(source, body, content_type)[1]
    except forms.FormError:
        return []  # read once when it came; a parser change that refuses it now replays nothing of it


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
