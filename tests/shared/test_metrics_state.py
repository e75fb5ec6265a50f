"""The state a scrape reads (shared/metrics.State, shared/db/stats.py) on a real Postgres and RabbitMQ:
exact counts, the estimate for a big conversions table, and a scrape that never hangs."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from prometheus_client import generate_latest

from shared import broker, metrics
from shared.db import stats
from tests.conftest import wait_for


async def _conversions(pool: asyncpg.Pool, statuses: dict[str, int]) -> None:
    batch_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO batches (id, source, counter_id, token_enc, status)"
        " VALUES ($1, 'single', 1, '', 'pending')",
        batch_id,
    )
    idx = 0
    for status, n in statuses.items():
        await pool.executemany(
            "INSERT INTO conversions (batch_id, idx, status) VALUES ($1, $2, $3)",
            [(batch_id, idx + i, status) for i in range(n)],
        )
        idx += n


async def test_conversions_are_counted_while_small_and_estimated_once_big(pool):
    await _conversions(pool, {"pending": 30, "completed": 60, "error": 10})
    async with pool.acquire() as conn:
        exact = await stats.snapshot(conn)
        await conn.execute("ANALYZE conversions")
        estimated = await stats.snapshot(conn, exact_conversions=50)  # "big" from 50 rows on
    assert exact["conversions"] == {"pending": 30, "completed": 60, "error": 10}
    # the planner's statistics of a table this small hold every row: the estimate is exact too
    assert estimated["conversions"] == {"pending": 30, "completed": 60, "error": 10}
    assert exact["outbox"] == {"": 0} and exact["tasks"] == {} and exact["dead_letters"] == {}


async def test_a_scrape_does_not_hang_on_a_locked_table_and_keeps_the_last_values(pool, settings):
    topology = broker.Topology(settings.queue_prefix)
    connection = await broker.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await broker.declare(channel, topology)
        state = metrics.State([topology.queue(broker.SCORE_TASKS)], timeout_s=1.0)
        await _conversions(pool, {"pending": 2})

        async def read():  # a loaded machine may miss the deadline once
            await state.refresh(pool, connection)
            text = generate_latest(state.registry).decode()
            return 'metrika_score_state_up{source="postgres"} 1.0' in text and text

        text = await wait_for(read, timeout=10, interval=0, what="a first read within the deadline")
        assert 'metrika_score_conversions{status="pending"} 2.0' in text
        assert 'metrika_score_state_up{source="postgres"} 1.0' in text
        assert f'metrika_score_queue_messages{{queue="{topology.queue(broker.SCORE_TASKS)}"}} 0.0' in text

        async with pool.acquire() as locker, locker.transaction():
            await locker.execute("LOCK TABLE conversions IN ACCESS EXCLUSIVE MODE")
            started = asyncio.get_running_loop().time()
            await asyncio.gather(state.refresh(pool, connection), state.refresh(pool, connection))
            assert asyncio.get_running_loop().time() - started < 3.0  # the deadline (1 s) and some slack
        text = generate_latest(state.registry).decode()
        assert 'metrika_score_state_up{source="postgres"} 0.0' in text
        assert 'metrika_score_conversions{status="pending"} 2.0' in text  # the last values it had
        assert 'metrika_score_state_up{source="rabbitmq"} 1.0' in text

        await state.refresh(pool, None)  # the gateway's relay is not connected
        assert 'metrika_score_state_up{source="rabbitmq"} 0.0' in generate_latest(state.registry).decode()
    finally:
        await connection.close()
