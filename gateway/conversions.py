"""Offline-conversion endpoints (bulk from a task, single, status), and the batch storage, limits and status
object the webhook endpoints share."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from gateway import callbacks, idempotency, keys, timestamps
from gateway.bodies import parse_body, read_json
from gateway.tasks import load_task
from shared import broker, errors, logs
from shared.conversions import Checked, Conversion, Rules, check_row
from shared.db import Executor, batches, bulk, notifications, tasks
from shared.schemas import ConversionsBulk, UploadCredentials
from shared.settings import Settings

# the webhook document's limit of conversions per request (the 10 MB body limit is in gateway.bodies)
MAX_CONVERSIONS = 1000
# row errors listed per batch in a status answer; the rest are counted
MAX_LISTED_ROW_ERRORS = 1000


async def create_bulk(request: web.Request) -> web.Response:
    """Every level-4+ visit of the run a task serves (of each day, for a backfill) not uploaded before for
    this counter and target becomes a ClientId conversion. The batch and its message are stored here in one
    statement; the uploader makes its rows from the task's visits when it takes it (shared/db/bulk.py)."""
    body = await parse_body(request, ConversionsBulk)
    task = await load_task(request, body.task_id)
    pool = request.app[keys.PG_POOL]
    await _check_served(pool, task)
    settings = request.app[keys.SETTINGS]
    cipher = request.app[keys.CIPHER]
    # a token stored under a key no longer configured: fall back to the environment's
    token = body.token or cipher.decrypt_or_none(task["token_enc"])
    token, counter = _credentials(settings, token, body.counter or task["counter"])
    batch_id = uuid.uuid4()
    zone = await request.app[keys.ZONES].zone(counter, token)  # before taking a connection: asks Metrika
    async with pool.acquire() as conn:
        made = await bulk.create_from_task(
            conn,
            batch_id=batch_id,
            task_id=task["id"],
            counter=counter,
            token_enc=cipher.encrypt(token),
            target=body.target,
            zone=zone.key,
            max_age_days=settings.conversion_max_age_days,
            callback_url=body.callback_url,
            headers=(headers := logs.message_headers()),
        )
    if not made.created:
        raise errors.Conflict(_nothing_to_send(made, settings.conversion_max_age_days))
    assert made.outbox_id is not None and made.message is not None
    await request.app[keys.RELAY].publish_now(
        [made.outbox_id], broker.CONVERSION_UPLOADS, made.message, headers
    )
    return web.json_response({"upload_id": str(batch_id), "status": "pending"})


async def _check_served(db: Executor, task: Any) -> None:
    """409 unless the task serves a completed run (a backfill parent: at least one of its days)."""
    if task["day_to"] is not None:
        if not any(day["served_id"] for day in await tasks.days(db, task["id"])):
            raise errors.Conflict("No day of this backfill is completed yet: there is nothing to upload")
        return
    if await tasks.served(db, tasks.root_of(task)) is None:
        if task["status"] == "failed":
            raise errors.Conflict(f"Task failed: {task['error']}")
        raise errors.Conflict("Task not finished")


def _nothing_to_send(made: bulk.BulkCreated, max_age_days: int) -> str:
    if not made.visits:
        return "Task has no level-4+ visits: there is nothing to upload"
    what = "day" if made.days == 1 else f"{made.days} days"
    if made.already_sent == made.visits:
        return (
            f"All {made.visits} level-4+ visits of this {what} were uploaded before for this target: "
            "there is nothing new to upload"
        )
    sent = f" ({made.already_sent} others were uploaded before for this target)" if made.already_sent else ""
    return (
        f"The task's visits are more than {max_age_days} days old{sent}: Metrika links a conversion "
        "only to a recent visit, so none would be attributed"
    )


async def create_single(request: web.Request) -> web.Response:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise errors.Unprocessable(
            [{"loc": ["body"], "msg": "Input should be a JSON object", "type": "dict_type"}]
        )
    credentials = UploadCredentials.model_validate(data)  # a ValidationError is a 422 (error middleware)
    settings = request.app[keys.SETTINGS]
    token, counter = _credentials(settings, credentials.token, credentials.counter)
    # a date_time without a zone is in the counter's
    row = check_row(data, 0, rules(settings, await request.app[keys.ZONES].zone(counter, token)))
    if not isinstance(row, Conversion):
        raise invalid_rows(Checked([], [row]), 1)
    pool = request.app[keys.PG_POOL]
    key = idempotency.key_of(request, idempotency.api_key_scope(request), await request.read())
    batch_id = key.batch_id if key is not None else uuid.uuid4()
    answer = {"upload_id": str(batch_id), "status": "pending"}
    if key is not None and (repeat := await idempotency.begin(pool, key, answer)):
        return repeat
    token_enc = request.app[keys.CIPHER].encrypt(token)
    try:
        await store_batch(
            request,
            batch_id,
            "single",
            counter,
            token_enc,
            "pending",
            [row.record(batch_id)],
            callback_url=credentials.callback_url,
        )
    except asyncpg.UniqueViolationError as exc:
        if key is None or not idempotency.is_duplicate_batch(exc):
            raise
        return await idempotency.lost_race(pool, key)
    return web.json_response(answer)


async def upload_status(request: web.Request) -> web.Response:
    pool = request.app[keys.PG_POOL]
    try:
        batch_id = uuid.UUID(request.match_info["upload_id"])
    except ValueError:
        raise errors.NotFound("Upload not found") from None
    row = await batches.status(pool, batch_id)
    if row is None:
        raise errors.NotFound("Upload not found")
    return web.json_response((await status_objects(pool, [row]))[0])


async def task_conversions(request: web.Request) -> web.Response:
    task = await load_task(request)
    pool = request.app[keys.PG_POOL]
    return web.json_response(await status_objects(pool, await batches.list_for_task(pool, task["id"])))


def rules(settings: Settings, zone: ZoneInfo) -> Rules:
    """The row rules for a counter in `zone` (a date_time without a zone is read in it)."""
    return Rules.current(zone, settings.conversion_max_age_days)


def check_count(rows: Sequence[Any]) -> None:
    if len(rows) > MAX_CONVERSIONS:
        raise errors.PayloadTooLarge(
            f"Too many conversions: {len(rows)} in one request, at most {MAX_CONVERSIONS}; split them"
        )
    if not rows:
        raise errors.BadRequest(f"conversions is empty: send 1 to {MAX_CONVERSIONS} conversions")


def invalid_rows(checked: Checked, total: int) -> errors.BadRequest:
    """The 400 that refuses a request with invalid rows: `{"detail", "errors": [per-row problems]}`."""
    return errors.BadRequest(
        f"{len(checked.rejected)} of {total} conversions are invalid; nothing was stored",
        extra={"errors": [error.as_dict() for error in checked.errors]},
    )


async def store_batch(
    request: web.Request,
    batch_id: uuid.UUID,
    source: str,
    counter_id: int,
    token_enc: bytes,
    status: str,
    records: Sequence[tuple[Any, ...]],
    *,
    task_id: uuid.UUID | None = None,
    webhook_id: uuid.UUID | None = None,
    callback_url: str | None = None,
) -> None:
    """Commit the batch, every row and its outbox message (shared with concurrent requests' batches);
    publishing follows in the background."""
    await request.app[keys.INTAKE].store(
        batches.NewBatch(
            batch_id, source, task_id, webhook_id, counter_id, token_enc, status, records, callback_url
        )
    )


async def status_objects(db: Executor, rows: Sequence[asyncpg.Record], *, webhook: bool = False) -> list[Any]:
    """Status answers for batches.status rows: the upload shape, or the webhook document's shape."""
    problems = await _problems(db, [row["id"] for row in rows])
    noted = await notifications.latest(db, [row["id"] for row in rows if row["callback_url"] is not None])
    answers: list[Any] = []
    for row in rows:
        batch_error = [{"index": None, "reason": row["error"]}] if row["error"] else []
        found = batch_error + problems[row["id"]] or None
        notification = callbacks.notification(row["callback_url"], noted.get(row["id"]))
        if webhook:
            answers.append(
                {
                    "batch_id": str(row["id"]),
                    "status": row["status"],
                    "webhook_id": str(row["webhook_id"]) if row["webhook_id"] else None,
                    "counter_id": row["counter_id"],
                    "created_at": timestamps.iso(row["created_at"]),
                    "updated_at": timestamps.iso(row["updated_at"]),
                    "metrika_upload_id": row["metrika_upload_id"],
                    "total": row["total"],
                    "processed": row["processed"],
                    "errors": found,
                    **_retry_fields(row),
                    "notification": notification,
                }
            )
        else:
            answers.append(
                {
                    "upload_id": str(row["id"]),
                    "status": upload_status_word(row["status"]),
                    "errors": found,
                    "processed": row["processed"],
                    "total": row["total"],
                    **_retry_fields(row),
                    "notification": notification,
                }
            )
    return answers


def upload_status_word(status: str) -> str:
    """An upload's status as the replaced API named it: its final success is "processed" (a webhook batch
    keeps "completed", the webhook API's word)."""
    return "processed" if status == "completed" else status


def _retry_fields(row: asyncpg.Record) -> dict[str, Any]:
    """While Metrika fails for now: when the next attempt is due, how many failed, and the last error."""
    return {
        "next_attempt_at": timestamps.iso(row["next_attempt_at"]),
        "attempts": row["attempts"],
        "last_error": row["last_error"],
    }


async def _problems(db: Executor, batch_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Per batch: its failed rows (the first ones, the rest counted), then Metrika's notes per file."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = {batch_id: [] for batch_id in batch_ids}
    if not batch_ids:
        return found
    failed: dict[uuid.UUID, int] = {}
    for row in await batches.first_row_errors(db, batch_ids, MAX_LISTED_ROW_ERRORS):
        problem = {"index": row["idx"], "reason": row["reason"]}
        if row["status"] in ("duplicate", "ignored"):  # not errors: sent once already; no conversion
            problem["status"] = row["status"]
        found[row["batch_id"]].append(problem)
        failed[row["batch_id"]] = row["errors_total"]
    for batch_id, total in failed.items():
        if total > MAX_LISTED_ROW_ERRORS:
            more = total - MAX_LISTED_ROW_ERRORS
            found[batch_id].append({"index": None, "reason": f"{more} more failed row(s) not listed"})
    for note in await batches.file_notes(db, batch_ids):
        found[note["batch_id"]].append(
            {"index": None, "id_type": note["id_type"], "reason": _file_note(note)}
        )
    return found


def _file_note(note: asyncpg.Record) -> str:
    parts = [f"Metrika linked {note['linked_quantity'] or 0} of {_rows(note['line_quantity'] or 0)}"]
    if note["user_not_found_quantity"]:
        parts.append(f"{_rows(note['user_not_found_quantity'])}: visitor not found")
    if note["goal_not_found_quantity"]:
        parts.append(f"{_rows(note['goal_not_found_quantity'])}: goal not found")
    return "; ".join(parts)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _credentials(settings: Settings, token: str | None, counter: int | None) -> tuple[str, int]:
    token = token or (settings.metrika_token.get_secret_value() if settings.metrika_token else None)
    if not token:
        raise errors.BadRequest("token is required (in body or env)")
    counter = counter or settings.metrika_counter
    if not counter:
        raise errors.BadRequest("counter is required (in body or env)")
    return token, counter
