"""Follows every uploaded file until Metrika has processed it; replicas share the work through Postgres.

Status queries run side by side (POLL_CONCURRENCY in all, COUNTER_CONCURRENCY per counter across every
replica), each with a timeout, so one counter's slow or failing queries never hold up another's. A failed
query is tried again later (the time is kept in Postgres); a file's new state and its batch's status change
in one transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import asyncpg

from shared import errors, metrics
from shared.db import batches
from shared.metrika import MetrikaError
from uploader import batch_status
from uploader.deps import Deps

logger = logging.getLogger(__name__)

IN_PROGRESS = frozenset({"PREPARED", "UPLOADED", "EXPORTED", "MATCHED"})
LINKAGE_FAILURE = (
    "Metrika could not link any row of this upload to a visit (LINKAGE_FAILURE): check the identifiers "
    "and that each conversion follows a visit by at most 21 days"
)
# an in-progress file is asked about every UPLOAD_POLL_S, or a tenth of its age if longer, at most this
MAX_POLL_INTERVAL_S = 600.0


async def run_poller(deps: Deps, stop: asyncio.Event) -> None:
    """Claim due files and poll them concurrently until `stop`; then give the polls in flight the
    shutdown grace and cancel the rest (their files are claimed again once their lease ends)."""
    settings = deps.settings
    slots = asyncio.Semaphore(settings.poll_concurrency)
    running: set[asyncio.Task[None]] = set()
    # a claimed file is left alone by other replicas for this long: longer than a query may take
    lease_s = max(settings.upload_poll_s, settings.metrika_timeout_s + 10.0)
    while not stop.is_set():
        room = 2 * settings.poll_concurrency - len(running)
        claimed: list[asyncpg.Record] = []
        if room > 0:
            try:
                claimed = await batches.claim_polls(deps.pool, room, lease_s)
            except Exception as exc:
                if not errors.is_unavailable(exc):
                    logger.exception("poller: could not claim files")
                else:
                    logger.warning("poller: %s; trying again", exc)
        for file in claimed:
            task = asyncio.create_task(_poll_in_turn(deps, file, slots))
            running.add(task)
            task.add_done_callback(running.discard)
        if not claimed:
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(settings.upload_poll_s, 1.0))
            except TimeoutError:
                pass
    if running:
        _, late = await asyncio.wait(set(running), timeout=settings.shutdown_grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


async def poll_once(deps: Deps, limit: int = 50) -> int:
    """Poll the files that are due now, side by side; how many there were (tests, one-off runs)."""
    due = await batches.claim_polls(deps.pool, limit, deps.settings.upload_poll_s)
    slots = asyncio.Semaphore(deps.settings.poll_concurrency)
    await asyncio.gather(*(_poll_in_turn(deps, file, slots) for file in due))
    return len(due)


async def _poll_in_turn(deps: Deps, file: asyncpg.Record, slots: asyncio.Semaphore) -> None:
    try:
        async with deps.counter_slot(file["counter_id"]), slots:
            await poll_file(deps, file)
    except asyncio.CancelledError:
        raise
    except MetrikaError as exc:  # the counter's slots stayed busy: its lease ends and it is polled again
        logger.info("poll of file %s deferred: %s", file["id"], exc)
    except Exception as exc:  # Postgres away, or a bug: the file's lease ends and it is polled again
        log = logger.warning if errors.is_unavailable(exc) else logger.exception
        log("poll of file %s failed: %s", file["id"], exc)


async def poll_file(deps: Deps, file: asyncpg.Record) -> None:
    """Ask Metrika about one file and record its answer (or when to ask again)."""
    settings = deps.settings
    try:
        client = deps.client(file["token_enc"], file["counter_id"])
        uploading = await client.uploading(file["metrika_upload_id"])
    except (MetrikaError, errors.Permanent) as exc:
        if isinstance(exc, MetrikaError) and not exc.retryable:
            await _end(deps, file, f"Metrika refused the status query: {exc}")
            return
        since = file["retrying_since"]
        if since is not None and _age_s(since) > settings.retry_horizon_s:
            hours = settings.retry_horizon_s / 3600
            await _end(deps, file, f"Metrika did not answer status queries for {hours:g} h; last: {exc}")
            return
        delay = deps.retry_delay_s(file["attempts"], exc)
        logger.warning(
            "status of Metrika upload %s: %s; asking again in %.0f s", file["metrika_upload_id"], exc, delay
        )
        await batches.poll_later(deps.pool, file["id"], str(exc), delay)
        return
    state = str(uploading.get("status"))
    if state == "PROCESSED":
        async with deps.pool.acquire() as conn, conn.transaction():
            await batches.file_processed(
                conn,
                file["id"],
                state,
                _int(uploading.get("line_quantity")),
                _int(uploading.get("linked_quantity")),
                _int(uploading.get("user_not_found_quantity")),
                _int(uploading.get("goal_not_found_quantity")),
            )
            await batch_status.refresh(conn, file["batch_id"])
        metrics.UPLOADS.labels("processed").inc()
    elif state == "LINKAGE_FAILURE":
        await _end(deps, file, LINKAGE_FAILURE, state)
    elif state in IN_PROGRESS:
        await _in_progress(deps, file, state)
    else:
        await _end(deps, file, f"Metrika reported an unknown upload status {state!r}", state)


async def _in_progress(deps: Deps, file: asyncpg.Record, state: str) -> None:
    settings = deps.settings
    age = _age_s(file["uploaded_at"])
    timeout = settings.upload_processing_timeout_s
    if not file["timed_out"] and age > timeout:
        # reported now, still followed at a slow pace, and corrected if Metrika finishes after all
        reason = f"Metrika did not finish processing within {timeout / 3600:g} h (last: {state})"
        await _end(deps, file, reason, state, check_again_s=settings.upload_slow_poll_s)
    elif file["timed_out"] and age > timeout + settings.retry_horizon_s:
        reason = (
            f"Metrika did not finish processing in {age / 3600:.0f} h (last: {state}); no longer followed"
        )
        await _end(deps, file, reason, state)
    else:
        interval = settings.upload_slow_poll_s if file["timed_out"] else _poll_interval_s(deps, age)
        await batches.file_processing(deps.pool, file["id"], state, interval)


async def _end(
    deps: Deps,
    file: asyncpg.Record,
    reason: str,
    state: str | None = None,
    *,
    check_again_s: float | None = None,
) -> None:
    """The file (and its rows) end in error: Metrika has it, so its rows are never sent again."""
    async with deps.pool.acquire() as conn, conn.transaction():
        await batches.file_failed(
            conn, file["id"], reason, state, retryable=False, check_again_s=check_again_s
        )
        await batch_status.refresh(conn, file["batch_id"])
    metrics.UPLOADS.labels("failed").inc()


def _poll_interval_s(deps: Deps, age_s: float) -> float:
    return min(max(deps.settings.upload_poll_s, age_s / 10), MAX_POLL_INTERVAL_S)


def _age_s(since: dt.datetime) -> float:
    return (dt.datetime.now(dt.UTC) - since).total_seconds()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
