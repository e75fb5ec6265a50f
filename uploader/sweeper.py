"""The uploader's sweeper: nothing stays stuck.

Every SWEEP_INTERVAL_S it re-queues the batches whose next attempt is due, and those that have not moved
for STALE_AFTER_S (their message was lost or dead-lettered, or their uploader died), and brings batches
whose files have all ended to their final status. Replicas share it: each batch is claimed with
`FOR UPDATE SKIP LOCKED`, and the claim commits only once the message is published.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from shared import errors
from shared.db import batches, crm
from uploader import batch_status
from uploader.deps import Deps
from uploader.handler import fail_remaining

logger = logging.getLogger(__name__)

Publish = Callable[[list[uuid.UUID]], Awaitable[None]]
# batches re-queued per sweep (one message each sweep, as the gateway's messages hold up to 64)
SWEEP_BATCH = 64


async def sweep_once(deps: Deps, publish: Publish) -> int:
    """One pass; how many batches were re-queued or ended."""
    settings = deps.settings
    async with deps.pool.acquire() as conn, conn.transaction():
        claimed = await batches.claim_due(conn, SWEEP_BATCH, settings.stale_after_s)
        requeue = [row["id"] for row in claimed if row["requeues"] <= settings.sweep_max_requeues]
        if requeue:
            await publish(requeue)  # if it fails, the claim rolls back and the next sweep tries again
    for row in claimed:
        if row["requeues"] > settings.sweep_max_requeues:
            reason = (
                f"not uploaded: re-queued {row['requeues'] - 1} times without progress "
                "(see GET /dead-letters for why its messages failed)"
            )
            await fail_remaining(deps.pool, row["id"], reason)
            await batches.uploads_done(deps.pool, row["id"])
            await batch_status.refresh(deps.pool, row["id"])
    await crm.forget_old(deps.pool, settings.crm_retention_days)  # CRM bodies past their retention
    stranded = await batches.stranded(deps.pool, SWEEP_BATCH, settings.stale_after_s)
    for batch_id in stranded:
        await batch_status.refresh(deps.pool, batch_id)
    if claimed or stranded:
        logger.info("sweeper: re-queued %s, brought along %s batch(es)", len(requeue), len(stranded))
    return len(claimed) + len(stranded)


async def run_sweeper(deps: Deps, publish: Publish, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await sweep_once(deps, publish)
        except Exception as exc:
            if errors.is_unavailable(exc):
                logger.warning("sweeper: %s; trying again", exc)
            else:
                logger.exception("sweeper failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=deps.settings.sweep_interval_s)
        except TimeoutError:
            pass
