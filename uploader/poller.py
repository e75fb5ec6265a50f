"""Polls Metrika for every uploaded file until it is processed or failed; replicas share the work."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg

from shared.db import batches
from uploader import batch_status
from uploader.deps import Deps
from uploader.metrika import MetrikaError

logger = logging.getLogger(__name__)

IN_PROGRESS = frozenset({"PREPARED", "UPLOADED", "EXPORTED", "MATCHED"})
LINKAGE_FAILURE = (
    "Metrika could not link any row of this upload to a visit (LINKAGE_FAILURE): check the identifiers "
    "and that each conversion follows a visit by at most 21 days"
)


async def poll_once(deps: Deps, limit: int = 50) -> int:
    """Poll the files that are due; returns how many were polled."""
    due = await batches.claim_polls(deps.pool, limit, deps.poll_interval_s)
    for file in due:
        try:
            await _poll_file(deps, file)
        except MetrikaError as exc:
            if exc.retryable:
                logger.warning(
                    "status of Metrika upload %s: %s; polling again later", file["metrika_upload_id"], exc
                )
                continue
            await batches.file_failed(deps.pool, file["id"], f"Metrika refused the status query: {exc}")
        await batch_status.refresh(deps.pool, file["batch_id"])
    return len(due)


async def _poll_file(deps: Deps, file: asyncpg.Record) -> None:
    client = deps.client(file["token_enc"], file["counter_id"])
    uploading = await client.uploading(file["metrika_upload_id"])
    state = str(uploading.get("status"))
    if state == "PROCESSED":
        await batches.file_processed(
            deps.pool,
            file["id"],
            state,
            uploading.get("line_quantity"),
            uploading.get("linked_quantity"),
            uploading.get("user_not_found_quantity"),
            uploading.get("goal_not_found_quantity"),
        )
    elif state == "LINKAGE_FAILURE":
        await batches.file_failed(deps.pool, file["id"], LINKAGE_FAILURE, state)
    elif state in IN_PROGRESS:
        age = dt.datetime.now(dt.UTC) - file["uploaded_at"]
        if age.total_seconds() > deps.processing_timeout_s:
            hours = deps.processing_timeout_s / 3600
            await batches.file_failed(
                deps.pool,
                file["id"],
                f"Metrika did not finish processing within {hours:g} h (last: {state})",
                state,
            )
        elif state in ("EXPORTED", "MATCHED"):
            await batches.file_processing(deps.pool, file["id"], state, deps.poll_interval_s)
    else:
        await batches.file_failed(
            deps.pool, file["id"], f"Metrika reported an unknown upload status {state!r}", state
        )


async def run_poller(deps: Deps, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            polled = await poll_once(deps)
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("poller: %s; retrying", exc)
            polled = 0
        if polled == 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(deps.poll_interval_s, 5.0))
            except TimeoutError:
                pass
