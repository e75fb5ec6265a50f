"""amoCRM/Kommo and Bitrix24 webhooks, called by the CRM exactly as it sends them.

Accepting is parse + store + commit + confirmed publish, as for a JSON webhook (one statement shared by
the requests that arrive together, gateway/intake.py): the form body is parsed here only to refuse a
malformed one with a 4xx naming the problem (the body is kept for inspection either way), and to check
Bitrix24's `auth[application_token]` when the webhook was given one. The body is stored as it came, with a
batch of no rows yet; the uploader maps its events to conversions (and asks Bitrix24 for the deal or lead)
before it uploads them (uploader/crm.py).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway import keys
from gateway.bodies import read_raw
from gateway.webhook_guard import secret_digest
from shared import errors
from shared.crm import forms
from shared.crm.bitrix24 import application_token_matches
from shared.crm.events import CrmEvent
from shared.crm.requests import read_request
from shared.db import crm, webhooks


async def accept(request: web.Request, webhook_id: uuid.UUID, source: str, given_secret: str) -> web.Response:
    pool = request.app[keys.PG_POOL]
    body = await read_raw(request, forms.MAX_BODY_BYTES)
    content_type = request.headers.get("Content-Type")
    try:
        events = await _events(request, webhook_id, source, body, content_type)
    except forms.FormError as exc:
        problem = f"not a {_NAMES[source]} webhook body: {exc}"
        await crm.insert_request(pool, webhook_id, None, content_type, body, problem)
        raise errors.BadRequest(problem) from None
    batch_id = uuid.uuid4()
    # stored as it came, with its batch and the batch's outbox message, in the group's one statement
    raw = (content_type, body)
    submission = webhooks.Submission(webhook_id, secret_digest(given_secret), batch_id, [], raw)
    answer = await request.app[keys.INTAKE].submit(submission)
    verdict = answer["verdict"]
    guard = request.app[keys.WEBHOOK_GUARD]
    if verdict == "not_found":
        raise errors.NotFound("Webhook not found")
    if verdict in ("forbidden", "inactive"):
        guard.forget(webhook_id)
        raise errors.Forbidden(
            "Invalid webhook secret" if verdict == "forbidden" else "Webhook is deactivated"
        )
    if verdict == "limited":
        raise guard.full(webhook_id, answer["seconds_left"])
    return web.json_response({"batch_id": str(batch_id), "status": "accepted", "events": len(events)})


async def _events(
    request: web.Request, webhook_id: uuid.UUID, source: str, body: bytes, content_type: str | None
) -> list[CrmEvent]:
    form, events = read_request(source, body, content_type)
    if source == "amocrm":
        return events
    token_enc = await webhooks.application_token(request.app[keys.PG_POOL], webhook_id)
    if token_enc is not None:
        expected = request.app[keys.CIPHER].decrypt(token_enc)
        if not application_token_matches(form, expected):
            raise errors.Forbidden("auth[application_token] does not match this webhook's application token")
    return events


_NAMES = {"amocrm": "amoCRM/Kommo", "bitrix24": "Bitrix24"}
