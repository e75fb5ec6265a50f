"""Webhook endpoints: management under the API key, and submission and status under the webhook's secret.

The secret is shown once, at creation or rotation, and kept only as its SHA-256 digest; the Metrika token
is kept encrypted and copied, still encrypted, onto each batch. Neither is ever returned again.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, cast

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway import crm_hooks, idempotency, keys, timestamps
from gateway.bodies import parse_body, parse_query, read_json
from gateway.conversions import (
    check_count,
    invalid_rows,
    rules,
    status_objects,
)
from gateway.middlewares import client_address, public
from gateway.webhook_guard import SECRET_HEADER, secret_digest
from shared import errors
from shared.conversions import Checked, check_rows
from shared.crm.sources import CRM_SOURCES, Source
from shared.crypto import TokenCipher
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
    cipher = request.app[keys.CIPHER]
    new = webhooks.NewWebhook(
        webhook_id,
        body.name,
        body.description,
        body.counter_id,
        cipher.encrypt(body.token),
        secret_digest(secret),
        body.source,
        body.mapping.model_dump(mode="json") if body.mapping else None,
        _encrypt(cipher, body.application_token),
        _encrypt(cipher, body.bitrix_webhook_url),
        body.callback_url,
    )
    await webhooks.insert(request.app[keys.PG_POOL], new)
    # its submissions read the counter's zone from what is kept: fetch it now, with the webhook's token
    await request.app[keys.ZONES].zone(body.counter_id, body.token)
    return web.json_response(
        {
            "webhook_id": str(webhook_id),
            "secret": secret,
            "url": _url(request, webhook_id, body.source, secret),
        }
    )


async def list_webhooks(request: web.Request) -> web.Response:
    rows = await webhooks.list_all(request.app[keys.PG_POOL])
    return web.json_response([_webhook(request, row) for row in rows])


async def update_webhook(request: web.Request) -> web.Response:
    """PATCH: the fields given change; a token or counter change reaches, in the same transaction, the
    webhook's batches not uploaded yet (`batches_updated`)."""
    webhook_id = _webhook_id(request)
    body = await parse_body(request, WebhookUpdate)
    cipher = request.app[keys.CIPHER]
    given = body.model_fields_set
    change = webhooks.Change(
        name=body.name,
        description_given="description" in given,
        description=body.description,
        token_enc=_encrypt(cipher, body.token),
        counter_id=body.counter_id,
        mapping=body.mapping.model_dump(mode="json") if body.mapping else None,
        is_active=body.is_active,
        application_token_given="application_token" in given,
        application_token_enc=_encrypt(cipher, body.application_token),
        bitrix_webhook_url_given="bitrix_webhook_url" in given,
        bitrix_webhook_url_enc=_encrypt(cipher, body.bitrix_webhook_url),
        callback_url_given="callback_url" in given,
        callback_url=body.callback_url,
    )
    guard = request.app[keys.WEBHOOK_GUARD]
    async with request.app[keys.PG_POOL].acquire() as conn, conn.transaction():
        source = await webhooks.source_for_update(conn, webhook_id)
        if source is None:
            raise errors.NotFound("Webhook not found")
        problems = body.source_problems(cast(Source, source))
        if problems:
            msgs = [f"Value error, {problem} (source {source})" for problem in problems]
            raise errors.Unprocessable([{"loc": ["body"], "msg": msg, "type": "value_error"} for msg in msgs])
        row = await webhooks.update(conn, webhook_id, change)
        updated = await webhooks.apply_credentials(conn, webhook_id) if body.changes_credentials() else 0
    guard.forget(webhook_id)
    if body.changes_credentials():
        await _fetch_zone(request, webhook_id)
    return web.json_response({**_webhook(request, row), "batches_updated": updated})


async def _fetch_zone(request: web.Request, webhook_id: uuid.UUID) -> None:
    """Keep the zone of the webhook's (new) counter, asked with its (new) token."""
    found = await webhooks.credentials(request.app[keys.PG_POOL], webhook_id)
    token = request.app[keys.CIPHER].decrypt_or_none(bytes(found["token_enc"])) if found else None
    if found is not None and token is not None:
        await request.app[keys.ZONES].zone(found["counter_id"], token)


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE: its batches stay (webhook_id set to NULL), readable by API key at /conversions/{id}/status."""
    webhook_id = _webhook_id(request)
    deleted = await webhooks.delete(request.app[keys.PG_POOL], webhook_id)
    request.app[keys.WEBHOOK_GUARD].forget(webhook_id)
    if not deleted:
        raise errors.NotFound("Webhook not found")
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    secret = secrets.token_urlsafe(32)
    source = await webhooks.set_secret(request.app[keys.PG_POOL], webhook_id, secret_digest(secret))
    if source is None:
        raise errors.NotFound("Webhook not found")
    request.app[keys.WEBHOOK_GUARD].forget(webhook_id)
    url = _url(request, webhook_id, source, secret)
    return web.json_response({"webhook_id": str(webhook_id), "secret": secret, "url": url})


@public
async def submit(request: web.Request) -> web.Response:
    """The secret in the X-Webhook-Secret header, or in `?secret=` for a sender that cannot set one."""
    return await _submit(request, _given_secret(request))


@public
async def submit_by_url(request: web.Request) -> web.Response:
    """The secret as the URL's last path segment: the form a CRM calls as it is."""
    return await _submit(request, request.match_info["secret"])


async def _submit(request: web.Request, given: str) -> web.Response:
    """Answers in the order 404, 403, 429, then the body's 408/413/415/422/400. The path and secret are
    checked before the body is read (gateway.webhook_guard); then one statement per group of concurrent
    requests checks them again, counts the request against the rate and stores the batch (gateway.intake)."""
    webhook_id = _webhook_id(request)
    guard = request.app[keys.WEBHOOK_GUARD]
    webhook = await guard.admit(webhook_id, given, client_address(request))
    if webhook["source"] != "json":
        return await crm_hooks.accept(request, webhook_id, webhook["source"], given)
    batch_id = uuid.uuid4()
    key: idempotency.Key | None = None
    try:
        partial, checked = await _read_conversions(request, webhook["counter_id"])
    except (errors.AppError, ValidationError) as exc:
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


async def _read_conversions(request: web.Request, counter: int) -> tuple[bool, Checked]:
    """(?partial, the checked rows) of a storable body, or the client error that refuses it. A date_time
    without a zone is in the counter's zone, as kept (no call to Metrika on this path)."""
    partial = parse_query(request, SubmitQuery).partial if request.query_string else False
    data = await read_json(request)
    conversions = data.get("conversions") if type(data) is dict else None
    if type(conversions) is not list:  # let the schema explain what is wrong (a 422)
        conversions = WebhookConversions.model_validate(data).conversions
    check_count(conversions)
    zone = await request.app[keys.ZONES].cached(counter)
    checked = check_rows(conversions, rules(request.app[keys.SETTINGS], zone))
    if checked.rejected and not (partial and checked.valid):
        raise invalid_rows(checked, len(conversions))
    return partial, checked


@public
async def batch_status(request: web.Request) -> web.Response:
    """Readable also while the webhook is deactivated: the sender may still follow its earlier batches."""
    pool = request.app[keys.PG_POOL]
    webhook_id = _webhook_id(request)
    await request.app[keys.WEBHOOK_GUARD].authenticate(
        webhook_id, _given_secret(request), client_address(request)
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


def _given_secret(request: web.Request) -> str:
    """The X-Webhook-Secret header, else the `secret` query parameter."""
    return request.headers.get(SECRET_HEADER) or request.query.get("secret", "")


def _url(request: web.Request, webhook_id: uuid.UUID, source: str = "json", secret: str = "") -> str:
    """The webhook's URL; for a CRM source, given its secret, the one the CRM calls as it is (the secret
    as the last path segment), since a CRM cannot set the X-Webhook-Secret header."""
    base = request.app[keys.SETTINGS].public_base_url.rstrip("/")
    url = f"{base}/webhook/offline-conversions/{webhook_id}"
    return f"{url}/{secret}" if secret and source in CRM_SOURCES else url


def _encrypt(cipher: TokenCipher, value: str | None) -> bytes | None:
    return None if value is None else cipher.encrypt(value)


def _webhook(request: web.Request, row: asyncpg.Record) -> dict[str, Any]:
    """A webhook as GET and PATCH show it: never its secret or tokens, only whether the Bitrix24 ones are
    set; `url` without the secret (the CRM's URL with it is shown at creation and rotation only)."""
    return {
        "webhook_id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "counter_id": row["counter_id"],
        "is_active": row["is_active"],
        "created_at": timestamps.iso(row["created_at"]),
        "url": _url(request, row["id"]),
        "source": row["source"],
        "mapping": row["mapping"],
        "has_application_token": row["has_application_token"],
        "has_bitrix_webhook_url": row["has_bitrix_webhook_url"],
        # where the signed summary of each finished batch is POSTed (null: none)
        "callback_url": row["callback_url"],
    }
