"""A bounded load of single-conversion webhooks (RATE requests per second for LOAD_S seconds) on two
uploader processes, one of them killed with `kill -9` in the middle and started again: every accepted
conversion is uploaded exactly once, every batch completes, the queue drains; the drain time is printed
(docs/RELIABILITY.md keeps the figures).

The sandbox runs without its Metrika quotas here (30 management calls per second per IP, 3 in flight per
token): every webhook request is its own batch and its own Metrika file, so 25 requests a second need
about 75 Metrika calls a second, more than Yandex allows one token; with the quotas on, the drain time
measures the quota, not the pipeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
import asyncpg
import pytest

from shared import broker
from tests.faults.stack import Sender, Stack, assert_exactly_once, new_client_ids, until, wait_all_completed

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

RATE = 25
LOAD_S = 60.0
KILL_AT_S = 25.0
RESTART_AT_S = 28.0
DRAIN_LIMIT_S = 90.0


async def test_load_with_an_uploader_killed_and_restarted_uploads_everything_once(
    make_stack: Callable[..., Stack],
) -> None:
    stack: Stack = make_stack(stale_after_s=15)
    await stack.start_sandbox(conversion_processing_seconds=0.5, management_rps=0, max_parallel=0)
    await stack.start_gateway()
    victim = await stack.start_uploader()
    await stack.start_uploader()
    hook = await stack.webhook()
    ids = new_client_ids(int(RATE * LOAD_S) + 100)
    await stack.register(ids)

    sender = Sender(stack, hook, ids, RATE)
    started = time.monotonic()
    sending = asyncio.create_task(sender.run())
    await asyncio.sleep(KILL_AT_S)
    await victim.kill9()
    await asyncio.sleep(max(0.0, started + RESTART_AT_S - time.monotonic()))
    await stack.start_uploader("uploader1-restarted")
    await asyncio.sleep(max(0.0, started + LOAD_S - time.monotonic()))
    sender.stop.set()
    await sending
    load_s = time.monotonic() - started

    accepted = sender.accepted()
    refused = [a for a in sender.answers if a.status != 200]
    database_url = stack.settings.database_url
    backlog = await _open_batches(database_url)
    load_end = time.monotonic()
    await wait_all_completed(database_url, list(accepted.values()), timeout=DRAIN_LIMIT_S)

    async def queue_empty() -> bool:
        return (await _queue_depths(stack))[0] == 0

    await until(queue_empty, timeout=30, interval=0.2, what="the upload queue empty")
    drain_s = time.monotonic() - load_end
    _, dead = await _queue_depths(stack)
    received = await stack.received()
    print(
        f"load: {len(sender.answers)} requests in {load_s:.1f}s ({len(sender.answers) / load_s:.1f}/s), "
        f"accepted {len(accepted)}, uploaded {sum(received.values())} lines "
        f"({len(received)} distinct); uploader killed at {KILL_AT_S:.0f}s, restarted at {RESTART_AT_S:.0f}s; "
        f"{backlog} batches open when the load stopped; drained (all completed, queue empty) "
        f"{drain_s:.1f}s later; dead letters {dead}"
    )
    assert not refused, f"{len(refused)} requests not accepted, e.g. {refused[:3]}"
    assert_exactly_once(received, set(accepted))
    assert dead == 0


async def _open_batches(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM batches WHERE status NOT IN ('completed', 'error')")
        )
    finally:
        await conn.close()


async def _queue_depths(stack: Stack) -> tuple[int, int]:
    """Messages waiting in the upload queue and its dead-letter queue."""
    topology = broker.Topology(stack.settings.queue_prefix)
    connection = await aio_pika.connect(stack.settings.amqp_url)
    try:
        channel = await connection.channel()
        depths = []
        for name in (
            topology.queue(broker.CONVERSION_UPLOADS),
            topology.dead_queue(broker.CONVERSION_UPLOADS),
        ):
            queue = await channel.declare_queue(name, passive=True)
            depths.append(int(queue.declaration_result.message_count or 0))
        return depths[0], depths[1]
    finally:
        await connection.close()
