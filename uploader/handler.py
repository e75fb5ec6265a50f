"""handle_upload_batches: each stored batch -> one Metrika upload per identifier type, exactly once.

A transient Metrika failure (429, 5xx, timeout, connection) never ends a batch: it stays `pending` with
`next_attempt_at`, `attempts` and `last_error`, and the sweeper brings it back then (any replica, after
any restart). Only Metrika's final word, or RETRY_HORIZON_S of failures, ends rows in error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import defaultdict

import asyncpg

from shared import errors, logs, metrics
from shared.bitrix24 import Bitrix24Error
from shared.db import batches, bulk, locks
from shared.metrika import MetrikaError
from shared.schemas import UploadBatches
from uploader import batch_status, crm, csvfile
from uploader.deps import Deps
from uploader.metrika import ConversionsApi

logger = logging.getLogger(__name__)

# batches of one message uploaded side by side (each holds a database connection while it runs)
BATCHES_AT_ONCE = 4


def upload_comment(file_id: int) -> str:
    """Our idempotency key on Metrika's side (comments allow only letters and digits)."""
    return f"metrikascore{file_id}"


async def handle_upload_batches(body: UploadBatches, deps: Deps) -> None:
    """Every batch of the message gets its turn, BATCHES_AT_ONCE at a time; then the first failure
    decides the message's fate (a redelivery skips the batches already done)."""
    turns = asyncio.Semaphore(BATCHES_AT_ONCE)

    async def turn(batch_id: uuid.UUID) -> None:
        async with turns:
            with logs.bind(batch_id=batch_id):
                await upload_batch(batch_id, deps)

    outcomes = await asyncio.gather(*(turn(b) for b in body.batch_ids), return_exceptions=True)
    failures = [exc for exc in outcomes if isinstance(exc, BaseException)]
    for exc in failures:
        if not isinstance(exc, Exception):
            raise exc  # cancelled: the message goes back to the queue
        logger.warning("a batch of the message failed: %s", exc)
    transient = [exc for exc in failures if not isinstance(exc, errors.Permanent)]
    if failures:
        raise (transient or failures)[0]


async def upload_batch(batch_id: uuid.UUID, deps: Deps) -> None:
    async with locks.hold(deps.pool, batch_id) as locked:
        if not locked:
            logger.info("batch %s is being uploaded elsewhere; dropping this duplicate", batch_id)
            return
        batch = await batches.get(deps.pool, batch_id)
        if batch is None:
            raise errors.Permanent(f"batch {batch_id} does not exist")
        if batch["status"] not in ("accepted", "pending"):
            await batch_status.refresh(deps.pool, batch_id)  # a crash may have left it behind its files
            return
        await batches.take(deps.pool, batch_id, deps.settings.stale_after_s)
        try:
            client = deps.client(batch["token_enc"], batch["counter_id"])
            await crm.materialize(deps, batch_id)  # a CRM webhook's request becomes its rows first
            if batch["source"] == "bulk":  # so does a bulk upload's task (one INSERT ... SELECT)
                await bulk.expand(deps.pool, batch_id)
            await _check_goals(deps, client, batch)
            async with deps.pool.acquire() as conn:
                await batches.set_aside_duplicates(conn, batch_id)
            await batches.split_into_files(deps.pool, batch_id)
            for file in await batches.files(deps.pool, batch_id):
                if file["status"] in ("new", "uploading"):
                    # one of the counter's slots (every replica's) while Metrika is asked
                    async with deps.counter_slot(batch["counter_id"]):
                        await _upload_file(deps, client, file)
        except (MetrikaError, Bitrix24Error) as exc:
            if exc.retryable:
                await _retry_later(deps, batch, exc)
            else:
                await fail_remaining(deps.pool, batch_id, str(exc))
        except errors.Permanent as exc:  # e.g. a token stored under an encryption key no longer configured
            await fail_remaining(deps.pool, batch_id, str(exc))
        else:
            await batches.uploads_done(deps.pool, batch_id)
        await batch_status.refresh(deps.pool, batch_id)


async def _check_goals(deps: Deps, client: ConversionsApi, batch: asyncpg.Record) -> None:
    """Rows whose Target is no goal of the counter would be dropped by Metrika silently: report them now
    (they may be sent again by POST .../retry once the goal exists)."""
    rows = await batches.pending_rows(deps.pool, batch["id"])
    if not rows:
        return
    wanted = {row["target"] for row in rows}
    targets = await deps.goal_targets(client, batch["token_enc"], wanted)
    unknown: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row["target"] not in targets:
            unknown[row["target"]].append(row["idx"])
    for target, indexes in unknown.items():
        reason = (
            f"goal {target!r} not found in counter {batch['counter_id']}: "
            "create a JavaScript-event goal with this identifier"
        )
        await batches.fail_rows(deps.pool, batch["id"], indexes, reason, retryable=True)


async def _upload_file(deps: Deps, client: ConversionsApi, file: asyncpg.Record) -> None:
    comment = upload_comment(file["id"])
    if file["status"] == "uploading" and await _adopt(deps, client, file["id"], comment):
        return  # an earlier attempt reached Metrika; its answer was lost
    await batches.file_uploading(deps.pool, file["id"])  # committed before the request leaves
    csv_bytes = csvfile.build(file["id_type"], await batches.file_rows(deps.pool, file["id"]))
    try:
        uploading = await client.upload(file["id_type"], csv_bytes, comment)
    except MetrikaError as exc:
        if exc.retryable:
            # a 5xx or a timeout may hide an upload Metrika did store: the file stays `uploading`, and
            # the next attempt looks for its comment before sending anything; a 429 is a refusal
            # before any work (and nothing earlier arrived: we looked), so that file is simply not sent
            if exc.status == 429:
                await batches.file_not_sent(deps.pool, file["id"])
            metrics.UPLOADS.labels("deferred").inc()
            raise
        metrics.UPLOADS.labels("refused").inc()
        await batches.file_failed(
            deps.pool, file["id"], f"Metrika rejected the upload: {exc}", retryable=True
        )
        return
    metrics.UPLOADS.labels("uploaded").inc()
    await _record_upload(deps, file["id"], uploading, deps.settings.upload_poll_s)


async def _adopt(deps: Deps, client: ConversionsApi, file_id: int, comment: str) -> bool:
    existing = await client.find_by_comment(comment)
    if existing is None:
        return False
    logger.info("file %s was already uploaded as Metrika upload %s", file_id, existing.get("id"))
    await _record_upload(deps, file_id, existing, 0.0)
    return True


async def _record_upload(deps: Deps, file_id: int, uploading: dict[str, object], poll_s: float) -> None:
    line_quantity = uploading.get("line_quantity")
    async with deps.pool.acquire() as conn:
        await batches.file_uploaded(
            conn,
            file_id,
            str(uploading["id"]),
            str(uploading.get("status") or "UPLOADED"),
            int(line_quantity) if isinstance(line_quantity, int) else None,
            poll_s,
        )


async def _retry_later(deps: Deps, batch: asyncpg.Record, exc: MetrikaError | Bitrix24Error) -> None:
    """Schedule the next attempt in Postgres, or give up once the horizon has passed."""
    since = batch["retrying_since"]
    horizon = deps.settings.retry_horizon_s
    if since is not None and (dt.datetime.now(dt.UTC) - since).total_seconds() > horizon:
        await _give_up(deps, batch, f"Metrika kept failing for {horizon / 3600:g} h; last: {exc}")
        return
    delay = deps.retry_delay_s(batch["attempts"], exc)
    logger.warning("batch %s: %s; next attempt in %.0f s", batch["id"], exc, delay)
    await batches.retry_later(deps.pool, batch["id"], str(exc), delay)


async def _give_up(deps: Deps, batch: asyncpg.Record, reason: str) -> None:
    """End what is left in error, after asking Metrika one last time about files whose answer was lost."""
    client = deps.client(batch["token_enc"], batch["counter_id"])
    for file in await batches.files(deps.pool, batch["id"]):
        if file["status"] != "uploading":
            continue
        try:
            if await _adopt(deps, client, file["id"], upload_comment(file["id"])):
                continue
        except MetrikaError as exc:
            reason = f"{reason} (whether Metrika received the file could not be checked: {exc})"
    await fail_remaining(deps.pool, batch["id"], reason)
    await batches.uploads_done(deps.pool, batch["id"])


async def fail_remaining(pool: asyncpg.Pool, batch_id: uuid.UUID, reason: str) -> None:
    """Rows not with Metrika end in error; they may be sent again (POST .../retry looks for a lost upload
    by its comment first, so nothing Metrika has is sent twice)."""
    logger.warning("batch %s: %s", batch_id, reason)
    for file in await batches.files(pool, batch_id):
        if file["status"] in ("new", "uploading"):
            await batches.file_failed(pool, file["id"], reason, retryable=True)
    rows = await batches.pending_rows(pool, batch_id)
    if rows:
        await batches.fail_rows(pool, batch_id, [row["idx"] for row in rows], reason, retryable=True)
