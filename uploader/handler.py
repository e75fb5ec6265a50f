"""handle_upload_batches: each stored batch -> one Metrika upload per identifier type, exactly once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict

import asyncpg

from shared import errors
from shared.db import batches, locks
from shared.schemas import UploadBatches
from uploader import batch_status, csvfile
from uploader.deps import Deps
from uploader.metrika import MetrikaClient, MetrikaError

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
        if batch["status"] in ("completed", "error"):
            return
        if batch["status"] == "accepted":  # a redelivery leaves a later status (uploaded, ...) as it is
            await batches.set_status(deps.pool, batch["id"], "pending")
        try:
            client = deps.client(batch["token_enc"], batch["counter_id"])
            await _check_goals(deps, client, batch)
            await batches.split_into_files(deps.pool, batch["id"])
            for file in await batches.files(deps.pool, batch["id"]):
                if file["status"] in ("new", "uploading"):
                    await _upload_file(deps, client, file)
        except (MetrikaError, errors.Permanent) as exc:
            # nothing more can be done for this batch's remaining rows: they end in error, with the reason
            reason = str(exc)
            logger.warning("batch %s: %s", batch["id"], reason)
            await _fail_remaining(deps.pool, batch["id"], reason)
        await batch_status.refresh(deps.pool, batch["id"])


async def _check_goals(deps: Deps, client: MetrikaClient, batch: asyncpg.Record) -> None:
    """Rows whose Target is no goal of the counter would be dropped by Metrika silently: report them now."""
    rows = await batches.pending_rows(deps.pool, batch["id"])
    if not rows:
        return
    targets = await client.goal_targets()
    unknown: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row["target"] not in targets:
            unknown[row["target"]].append(row["idx"])
    for target, indexes in unknown.items():
        reason = (
            f"goal {target!r} not found in counter {batch['counter_id']}: "
            "create a JavaScript-event goal with this identifier"
        )
        await batches.fail_rows(deps.pool, batch["id"], indexes, reason)


async def _upload_file(deps: Deps, client: MetrikaClient, file: asyncpg.Record) -> None:
    comment = upload_comment(file["id"])
    if file["status"] == "uploading" and await _adopt(deps, client, file["id"], comment):
        return  # an earlier delivery's upload reached Metrika; its answer was lost
    await batches.file_uploading(deps.pool, file["id"])  # committed before the request leaves
    csv_bytes = csvfile.build(file["id_type"], await batches.file_rows(deps.pool, file["id"]))
    for attempt in range(1, client.attempts + 1):
        try:
            uploading = await client.upload(file["id_type"], csv_bytes, comment)
        except MetrikaError as exc:
            if not exc.retryable:
                await batches.file_failed(deps.pool, file["id"], f"Metrika rejected the upload: {exc}")
                return
            logger.warning("upload of file %s failed (%s), attempt %s", file["id"], exc, attempt)
            if attempt == client.attempts:
                exc.attempts = attempt
                if not await _adopt(deps, client, file["id"], comment):
                    await batches.file_failed(deps.pool, file["id"], f"upload failed: {exc}")
                return
            await asyncio.sleep(client.backoff_s(attempt))
            # a timeout or a 5xx may hide an upload Metrika did store: never send it twice
            if await _adopt(deps, client, file["id"], comment):
                return
        else:
            await _record_upload(deps.pool, file["id"], uploading, deps.poll_interval_s)
            return


async def _adopt(deps: Deps, client: MetrikaClient, file_id: int, comment: str) -> bool:
    existing = await client.find_by_comment(comment)
    if existing is None:
        return False
    logger.info("file %s was already uploaded as Metrika upload %s", file_id, existing.get("id"))
    await _record_upload(deps.pool, file_id, existing, 0.0)
    return True


async def _record_upload(
    pool: asyncpg.Pool, file_id: int, uploading: dict[str, object], poll_s: float
) -> None:
    line_quantity = uploading.get("line_quantity")
    async with pool.acquire() as conn:
        await batches.file_uploaded(
            conn,
            file_id,
            str(uploading["id"]),
            str(uploading.get("status") or "UPLOADED"),
            int(line_quantity) if isinstance(line_quantity, int) else None,
            poll_s,
        )


async def _fail_remaining(pool: asyncpg.Pool, batch_id: uuid.UUID, reason: str) -> None:
    for file in await batches.files(pool, batch_id):
        if file["status"] in ("new", "uploading"):
            await batches.file_failed(pool, file["id"], reason)
    rows = await batches.pending_rows(pool, batch_id)
    if rows:
        await batches.fail_rows(pool, batch_id, [row["idx"] for row in rows], reason)
