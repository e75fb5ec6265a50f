"""A CRM webhook request becomes conversion rows: its events, mapped by the webhook's mapping.

Runs in the uploader, before a batch from an amoCRM/Kommo or Bitrix24 webhook is uploaded (the gateway only
stored the body). Each event is one row, in the request's order:

- an event that makes a conversion whose natural key an earlier request brought is a `duplicate` row (a CRM
  retrying, or sending a status change through two hooks);
- a Bitrix24 event is looked up first (`crm.deal.get` / `crm.lead.get` through the webhook's inbound-webhook
  URL, at the portal's pace); the limit, 5xx and timeouts are retried later like a Metrika outage, a deal
  that is not found is an `ignored` row;
- an event that matches no status rule, or has no identifier, is an `ignored` row with the reason;
- the rest is judged by the same row rules as a JSON conversion (a `date_time` without a zone is in the
  counter's zone): `pending`, or `error` with the reason.
The rows and the request's "mapped" mark are written in one transaction, so a crash maps it again.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from shared import errors
from shared.bitrix24 import Bitrix24Client, Bitrix24Error
from shared.conversions import Conversion, Rules, check_row
from shared.crm import forms
from shared.crm.events import CrmEvent
from shared.crm.mapping import CrmMapping, Ignored, map_event
from shared.crm.requests import read_request
from shared.db import batches, crm
from uploader.deps import Deps


async def materialize(deps: Deps, batch_id: uuid.UUID) -> None:
    """Map the CRM request behind `batch_id` into its rows, once; nothing for other batches."""
    request = await crm.of_batch(deps.pool, batch_id)
    if request is None or request["mapped_at"] is not None:
        return
    if request["source"] is None:  # its webhook was deleted before the request was mapped
        raise errors.Permanent("the webhook of this CRM request was deleted before its events were mapped")
    events = _events(request["source"], bytes(request["body"]), request["content_type"])
    mapping = CrmMapping.model_validate(request["mapping"]) if request["mapping"] else None
    # a date_time without a zone is in the zone of the counter the batch goes to
    zone = await deps.zones.zone(request["counter_id"], deps.cipher.decrypt(bytes(request["token_enc"])))
    rules = Rules.current(zone, deps.settings.conversion_max_age_days)
    records = [
        await _row(deps, request, batch_id, idx, event, mapping, rules) for idx, event in enumerate(events)
    ]
    async with deps.pool.acquire() as conn, conn.transaction():
        await batches.insert_conversions(conn, records)
        await crm.mark_mapped(conn, request["id"])


async def _row(
    deps: Deps,
    request: asyncpg.Record,
    batch_id: uuid.UUID,
    idx: int,
    event: CrmEvent,
    mapping: CrmMapping | None,
    rules: Rules,
) -> tuple[Any, ...]:
    """The event's row, shaped as batches.CONVERSION_COLUMNS. Only an event that makes a conversion claims
    its natural key: one ignored before (say, under an older mapping) may still make one when sent again."""
    if mapping is None:
        return _kept(batch_id, idx, event, "ignored", "the webhook has no mapping")
    enriched = await _enriched(deps, request, event) if event.source == "bitrix24" else None
    mapped = enriched if isinstance(enriched, Ignored) else map_event(event, mapping, enriched)
    if isinstance(mapped, Ignored):
        return _kept(batch_id, idx, event, "ignored", mapped.reason)
    row = check_row(mapped, idx, rules)
    if isinstance(row, Conversion):
        holder = await crm.claim_event(deps.pool, request["webhook_id"], event.natural_key, batch_id, idx)
        if holder != (batch_id, idx):
            reason = f"the same CRM event came before, as row {holder[1]} of batch {holder[0]}"
            return _kept(batch_id, idx, event, "duplicate", reason)
    return row.record(batch_id)


def _events(source: str, body: bytes, content_type: str | None) -> list[CrmEvent]:
    """The request's events (the gateway read it once already: it cannot fail here but by a change of
    parser, and then it fails the batch with the reason)."""
    try:
        return read_request(source, body, content_type)[1]
    except forms.FormError as exc:
        raise errors.Permanent(f"the CRM request cannot be read: {exc}") from exc


async def _enriched(deps: Deps, request: asyncpg.Record, event: CrmEvent) -> dict[str, Any] | Ignored:
    """The deal or lead as Bitrix24's REST API has it; a refusal that time will not mend is Ignored."""
    if request["bitrix_webhook_url_enc"] is None:
        return Ignored("the webhook has no Bitrix24 inbound-webhook URL to read the deal or lead with")
    url = deps.cipher.decrypt(bytes(request["bitrix_webhook_url_enc"]))
    client = Bitrix24Client(
        deps.session,
        url,
        attempts=deps.settings.http_retry_attempts,
        backoff_max_s=deps.settings.http_retry_max_s,
        timeout_s=deps.settings.metrika_timeout_s,
    )
    try:
        if event.entity == "deal":
            return await client.deal(event.entity_id)
        return await client.lead(event.entity_id)
    except Bitrix24Error as exc:
        if exc.retryable:
            raise  # the batch is tried again later, like a Metrika outage
        return Ignored(f"Bitrix24 would not give {event.entity} {event.entity_id}: {exc}")


def _kept(batch_id: uuid.UUID, idx: int, event: CrmEvent, status: str, reason: str) -> tuple[Any, ...]:
    """A row that is not sent, shaped as batches.CONVERSION_COLUMNS, naming the lead or deal."""
    return (batch_id, idx, None, None, None, None, None, None, event.entity_id, status, reason)
