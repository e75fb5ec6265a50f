"""Webhook endpoints: management under the API key, and submission and status under the webhook's secret.

The secret is shown once, at creation or rotation, and kept only as its SHA-256 digest; the Metrika token
is kept encrypted and copied, still encrypted, onto each batch. Neither is ever returned again.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway import idempotency, keys
from gateway.bodies import parse_body, parse_query, read_json
from gateway.conversions import (
    check_count,
    invalid_rows,
    iso_utc,
    rules,
    status_objects,
)
from gateway.middlewares import client_address, public
from gateway.webhook_guard import SECRET_HEADER, secret_digest
from shared import errors
from shared.conversions import Checked, check_rows
from shared.db import batches, webhooks
from shared.schemas import WebhookConversions, WebhookCreate, WebhookUpdate


class SubmitQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # accept the valid rows and keep the invalid ones as failed rows, instead of refusing the request
    partial: bool = False


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    batch_id: uuid.UUID


async def create_webhook(request: web.Request) -> web.Response:
    body = await parse_body(request, WebhookCreate)
    webhook_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)
    token_enc = request.app[keys.CIPHER].encrypt(body.token)
    pool = request.app[keys.PG_POOL]
    await webhooks.insert(
        pool, webhook_id, body.name, body.description, body.counter_id, token_enc, secret_digest(secret)
    )
    return web.json_response(
        {"webhook_id": str(webhook_id), "secret": secret, "url": _url(request, webhook_id)}
    )


async def list_webhooks(request: web.Request) -> web.Response:
    rows = await webhooks.list_all(request.app[keys.PG_POOL])
    return web.json_response([_webhook(request, row) for row in rows])


async def update_webhook(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    body = await parse_body(request, WebhookUpdate)
    row = await webhooks.set_active(request.app[keys.PG_POOL], webhook_id, body.is_active)
    request.app[keys.WEBHOOK_GUARD].forget(webhook_id)
    if row is None:
        raise errors.NotFound("Webhook not found")
    return web.json_response(_webhook(request, row))


async def rotate_secret(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    secret = secrets.token_urlsafe(32)
    if not await webhooks.set_secret(request.app[keys.PG_POOL], webhook_id, secret_digest(secret)):
        raise errors.NotFound("Webhook not found")
    request.app[keys.WEBHOOK_GUARD].forget(webhook_id)
    return web.json_response({"webhook_id": str(webhook_id), "secret": secret})


@public
async def submit(request: web.Request) -> web.Response:
    """Answers in the order 404, 403, 429, then the body's 408/413/422/400. The path and header are checked
    before the body is read (gateway.webhook_guard); then one statement per group of concurrent requests
    checks them again, counts the request against the rate and stores the batch (gateway.intake)."""
    webhook_id = _webhook_id(request)
    given = request.headers.get(SECRET_HEADER, "")
    guard = request.app[keys.WEBHOOK_GUARD]
    await guard.admit(webhook_id, given, client_address(request))
    batch_id = uuid.uuid4()
    key: idempotency.Key | None = None
    try:
        partial, checked = await _read_conversions(request)
    except (errors.AppError, web.HTTPException, ValidationError) as exc:
        # still counted against the rate (a request that passed the checks above), and answered after it
        refusal: Exception | None = exc
        records: list[tuple[Any, ...]] = []
    else:
        refusal = None
        key = idempotency.key_of(request, f"webhook:{webhook_id}", await request.read())
        if key is not None:
            batch_id = key.batch_id
        result = _accepted(batch_id, partial, checked)
        if key is not None and (repeat := await idempotency.begin(request.app[keys.PG_POOL], key, result)):
            return repeat
        records = [row.record(batch_id) for row in checked.valid] + [
            row.record(batch_id) for row in checked.rejected
        ]
    submission = webhooks.Submission(webhook_id, secret_digest(given), None if refusal else batch_id, records)
    try:
        answer = await request.app[keys.INTAKE].submit(submission)
    except asyncpg.UniqueViolationError as exc:
        if refusal is not None or key is None or not idempotency.is_duplicate_batch(exc):
            raise
        return await idempotency.lost_race(request.app[keys.PG_POOL], key)
    verdict = answer["verdict"]
    if verdict == "not_found":  # deleted while the body was read
        raise errors.NotFound("Webhook not found")
    if verdict == "forbidden":
        guard.forget(webhook_id)
        raise errors.Forbidden("Invalid webhook secret")
    if verdict == "inactive":
        guard.forget(webhook_id)
        raise errors.Forbidden("Webhook is deactivated")
    if verdict == "limited":
        raise guard.full(webhook_id, answer["seconds_left"])
    if refusal is not None:
        raise refusal
    if verdict != "stored":  # every check above passed, so the statement stored it
        raise RuntimeError(f"batch {batch_id} passed every check but was not stored ({verdict})")
    return web.json_response(result)


def _accepted(batch_id: uuid.UUID, partial: bool, checked: Checked) -> dict[str, Any]:
    result: dict[str, Any] = {
        "batch_id": str(batch_id),
        "status": "accepted",
        "accepted_count": len(checked.valid),
    }
    if partial:
        result["rejected_count"] = len(checked.rejected)
    return result


async def _read_conversions(request: web.Request) -> tuple[bool, Checked]:
    """(?partial, the checked rows) of a storable body, or the client error that refuses it."""
    partial = parse_query(request, SubmitQuery).partial if request.query_string else False
    data = await read_json(request)
    conversions = data.get("conversions") if type(data) is dict else None
    if type(conversions) is not list:  # let the schema explain what is wrong (a 422)
        conversions = WebhookConversions.model_validate(data).conversions
    check_count(conversions)
    checked = check_rows(conversions, rules(request.app[keys.SETTINGS]))
    if checked.rejected and not (partial and checked.valid):
        raise invalid_rows(checked, len(conversions))
    return partial, checked


@public
async def batch_status(request: web.Request) -> web.Response:
    """Readable also while the webhook is deactivated: the sender may still follow its earlier batches."""
    pool = request.app[keys.PG_POOL]
    webhook_id = _webhook_id(request)
    await request.app[keys.WEBHOOK_GUARD].authenticate(
        webhook_id, request.headers.get(SECRET_HEADER, ""), client_address(request)
    )
    query = parse_query(request, StatusQuery)
    row = await batches.status(pool, query.batch_id)
    if row is None or row["webhook_id"] != webhook_id:
        raise errors.NotFound("Batch not found")
    return web.json_response((await status_objects(pool, [row], webhook=True))[0])


def _webhook_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["webhook_id"])
    except ValueError:
        raise errors.NotFound("Webhook not found") from None


def _url(request: web.Request, webhook_id: uuid.UUID) -> str:
    base = request.app[keys.SETTINGS].public_base_url.rstrip("/")
    return f"{base}/webhook/offline-conversions/{webhook_id}"


def _webhook(request: web.Request, row: asyncpg.Record) -> dict[str, Any]:
    return {
        "webhook_id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "counter_id": row["counter_id"],
        "is_active": row["is_active"],
        "created_at": iso_utc(row["created_at"]),
        "url": _url(request, row["id"]),
    }
