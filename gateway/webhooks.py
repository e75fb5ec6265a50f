"""Webhook endpoints: management under the API key, and submission and status under the webhook's secret.

The secret is shown once, at creation or rotation, and kept only as its SHA-256 digest; the Metrika token
is kept encrypted and copied, still encrypted, onto each batch. Neither is ever returned again.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import keys
from gateway.bodies import parse_body, parse_query, read_json
from gateway.conversions import (
    check_count,
    invalid_rows,
    iso_utc,
    rules,
    status_objects,
    store_batch,
)
from gateway.middlewares import public
from shared import errors
from shared.conversions import check_rows
from shared.db import batches, webhooks
from shared.schemas import WebhookConversions, WebhookCreate, WebhookUpdate

SECRET_HEADER = "X-Webhook-Secret"


class TooManyRequests(errors.AppError):
    """Too many requests."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}  # read by the error middleware


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
        pool, webhook_id, body.name, body.description, body.counter_id, token_enc, _digest(secret)
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
    if row is None:
        raise errors.NotFound("Webhook not found")
    return web.json_response(_webhook(request, row))


async def rotate_secret(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    secret = secrets.token_urlsafe(32)
    if not await webhooks.set_secret(request.app[keys.PG_POOL], webhook_id, _digest(secret)):
        raise errors.NotFound("Webhook not found")
    return web.json_response({"webhook_id": str(webhook_id), "secret": secret})


@public
async def submit(request: web.Request) -> web.Response:
    webhook = await _authenticate(request, count=True)
    if not webhook["is_active"]:
        raise errors.Forbidden("Webhook is deactivated")
    await _check_rate(request, webhook)
    query = parse_query(request, SubmitQuery)
    body = WebhookConversions.model_validate(await read_json(request))  # ValidationError: 422
    check_count(body.conversions)
    checked = check_rows(body.conversions, rules(request.app[keys.SETTINGS]))
    if checked.rejected and not (query.partial and checked.valid):
        raise invalid_rows(checked, len(body.conversions))
    batch_id = uuid.uuid4()
    records = [row.record(batch_id) for row in checked.valid] + [
        row.record(batch_id) for row in checked.rejected
    ]
    await store_batch(
        request,
        batch_id,
        "webhook",
        webhook["counter_id"],
        bytes(webhook["token_enc"]),
        "accepted",
        records,
        webhook_id=webhook["id"],
    )
    answer: dict[str, Any] = {
        "batch_id": str(batch_id),
        "status": "accepted",
        "accepted_count": len(checked.valid),
    }
    if query.partial:
        answer["rejected_count"] = len(checked.rejected)
    return web.json_response(answer)


@public
async def batch_status(request: web.Request) -> web.Response:
    """Readable also while the webhook is deactivated: the sender may still follow its earlier batches."""
    webhook = await _authenticate(request)
    query = parse_query(request, StatusQuery)
    pool = request.app[keys.PG_POOL]
    row = await batches.status(pool, query.batch_id)
    if row is None or row["webhook_id"] != webhook["id"]:
        raise errors.NotFound("Batch not found")
    return web.json_response((await status_objects(pool, [row], webhook=True))[0])


async def _authenticate(request: web.Request, *, count: bool = False) -> asyncpg.Record:
    """The webhook whose secret the request carries; with `count`, its request is also rate-counted."""
    webhook_id = _webhook_id(request)
    given = request.headers.get(SECRET_HEADER, "")
    digest = _digest(given)
    pool = request.app[keys.PG_POOL]
    webhook = await (
        request.app[keys.INTAKE].webhook((webhook_id, digest)) if count else webhooks.get(pool, webhook_id)
    )
    if webhook is None:
        raise errors.NotFound("Webhook not found")
    if not given:
        raise errors.Forbidden(f"Missing webhook secret: send it in the {SECRET_HEADER} header")
    # digests have one length whatever was sent, and compare_digest takes the same time wherever they differ
    if not hmac.compare_digest(digest, bytes(webhook["secret_hash"])):
        raise errors.Forbidden("Invalid webhook secret")
    return webhook


async def _check_rate(request: web.Request, webhook: asyncpg.Record) -> None:
    hits = webhook["hits"]
    if hits == 1:
        # a new minute for this webhook: a cheap moment to drop everyone's finished windows
        await webhooks.prune_rate(request.app[keys.PG_LOSSY_POOL])
    limit = request.app[keys.SETTINGS].webhook_rate_per_minute
    if hits is not None and hits > limit:
        retry_after = max(1, math.ceil(webhook["seconds_left"]))
        raise TooManyRequests(
            f"Rate limit exceeded: at most {limit} requests per minute per webhook; retry in {retry_after} s",
            retry_after,
        )


def _webhook_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["webhook_id"])
    except ValueError:
        raise errors.NotFound("Webhook not found") from None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


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
