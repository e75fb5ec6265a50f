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
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway import keys
from gateway.bodies import parse_body, parse_query, read_json
from gateway.conversions import (
    check_count,
    invalid_rows,
    iso_utc,
    rules,
    status_objects,
)
from gateway.middlewares import public
from shared import errors
from shared.conversions import Checked, check_rows
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
    """Checks answer in the order 404, 403, 429, then the body's 413/422/400; one round trip does the
    lookup, the rate count and the store (see gateway.intake), so the body is read first."""
    webhook_id = _webhook_id(request)
    given = request.headers.get(SECRET_HEADER, "")
    batch_id = uuid.uuid4()
    try:
        partial, checked = await _read_conversions(request)
    except (errors.AppError, web.HTTPException, ValidationError) as exc:
        refusal: Exception | None = exc
        records: list[tuple[Any, ...]] = []
    else:
        refusal = None
        records = [row.record(batch_id) for row in checked.valid] + [
            row.record(batch_id) for row in checked.rejected
        ]
    submission = webhooks.Submission(webhook_id, _digest(given), None if refusal else batch_id, records)
    webhook = _verify(await request.app[keys.INTAKE].submit(submission), given)
    if not webhook["is_active"]:
        raise errors.Forbidden("Webhook is deactivated")
    await _check_rate(request, webhook)
    if refusal is not None:
        raise refusal
    if not webhook["stored"]:  # every check above passed, so the statement stored it
        raise RuntimeError(f"batch {batch_id} passed every check but was not stored")
    answer: dict[str, Any] = {
        "batch_id": str(batch_id),
        "status": "accepted",
        "accepted_count": len(checked.valid),
    }
    if partial:
        answer["rejected_count"] = len(checked.rejected)
    return web.json_response(answer)


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
    webhook = _verify(await webhooks.get(pool, webhook_id), request.headers.get(SECRET_HEADER, ""))
    query = parse_query(request, StatusQuery)
    row = await batches.status(pool, query.batch_id)
    if row is None or row["webhook_id"] != webhook["id"]:
        raise errors.NotFound("Batch not found")
    return web.json_response((await status_objects(pool, [row], webhook=True))[0])


def _verify(webhook: asyncpg.Record | None, given: str) -> asyncpg.Record:
    """The webhook, if it exists and `given` is its secret; else 404 or 403."""
    if webhook is None:
        raise errors.NotFound("Webhook not found")
    if not given:
        raise errors.Forbidden(f"Missing webhook secret: send it in the {SECRET_HEADER} header")
    # digests have one length whatever was sent, and compare_digest takes the same time wherever they differ
    if not hmac.compare_digest(_digest(given), bytes(webhook["secret_hash"])):
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
