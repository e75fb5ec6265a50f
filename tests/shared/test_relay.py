from __future__ import annotations

import asyncio
import datetime as dt

import aio_pika
import asyncpg
import pytest

from gateway.app import create_app
from shared import broker
from shared.db import outbox
from shared.relay import OutboxRelay
from tests.conftest import AMQP_URL, API_KEY, outbox_drained, override, wait_for
from tests.shared.faults import TcpProxy, close_broker_connection

YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()
TASKS_BODY = {"task_id": "7b6c3c3e-8a0b-4c55-9e43-1f2c1c0f8a11"}


async def _messages(prefix: str, routing_key: str = broker.SCORE_TASKS) -> list[str]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.Topology(prefix).queue(routing_key))
        got = []
        while (message := await queue.get(fail=False, timeout=2)) is not None:
            got.append(message.body.decode())
            await message.ack()
    return got


async def _unmarked(pool: asyncpg.Pool) -> list[int]:
    return [r["id"] for r in await pool.fetch("SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id")]


async def _mark_blocked(pool: asyncpg.Pool) -> bool:
    """Whether the relay's "published" mark is waiting for a row lock."""
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE outbox SET published_at%'"
        )
    )


@pytest.fixture
async def proxy():
    proxy = TcpProxy(5672)
    await proxy.restore()
    yield proxy
    await proxy.cut()


async def test_broker_down_at_accept_time_still_publishes_later(settings, aiohttp_client, pool):
    # a gateway whose broker is unreachable still accepts durably
    down = override(settings, amqp_url="amqp://guest:guest@127.0.0.1:1/")
    client = await aiohttp_client(create_app(down), headers={"Authorization": f"Bearer {API_KEY}"})
    ids = []
    for _ in range(3):
        resp = await client.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 5})
        assert resp.status == 200
        ids.append((await resp.json())["task_id"])
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 3
    health = await (await client.get("/health")).json()
    assert health["broker_connected"] is False and health["outbox_pending"] == 3

    # the broker is back (a relay that can reach it): everything is published, in order
    relay = OutboxRelay(pool, AMQP_URL, broker.Topology(settings.queue_prefix), 0.1, sweep_min_age_s=0)
    stop = asyncio.Event()
    runner = asyncio.create_task(relay.run(stop))
    try:
        await wait_for(lambda: outbox_drained(pool), timeout=30)
    finally:
        stop.set()
        await runner
        await relay.close()
    assert [f'{{"task_id":"{i}"}}' for i in ids] == await _messages(settings.queue_prefix)


@pytest.mark.parametrize("then", ["wait", "close"])
async def test_a_publish_during_a_slow_mark_is_marked_once(settings, pool, then):
    relay = OutboxRelay(pool, AMQP_URL, broker.Topology(settings.queue_prefix), 60)
    assert await relay.try_connect()
    first = await outbox.add(pool, broker.SCORE_TASKS, TASKS_BODY)
    second = await outbox.add(pool, broker.SCORE_TASKS, TASKS_BODY)
    blocker = await asyncpg.connect(settings.database_url)
    try:
        # hold the first row so that the mark of its publish is slow
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", first)
            assert await relay.publish_now([first], broker.SCORE_TASKS, TASKS_BODY)
            await wait_for(lambda: _mark_blocked(pool), timeout=10, interval=0.02)
            assert await relay.publish_now([second], broker.SCORE_TASKS, TASKS_BODY)
            closing = asyncio.create_task(relay.close()) if then == "close" else None
    finally:
        await blocker.close()
    if closing is not None:
        await closing  # close() writes the marks of everything published
    else:
        await wait_for(lambda: _empty(_unmarked(pool)), timeout=10)
        await relay.close()
    assert await _unmarked(pool) == []
    assert len(await _messages(settings.queue_prefix)) == 2


async def test_close_right_after_a_publish_marks_it(settings, pool):
    relay = OutboxRelay(pool, AMQP_URL, broker.Topology(settings.queue_prefix), 60)
    assert await relay.try_connect()
    row = await outbox.add(pool, broker.SCORE_TASKS, TASKS_BODY)
    assert await relay.publish_now([row], broker.SCORE_TASKS, TASKS_BODY)
    await relay.close()
    assert await _unmarked(pool) == []


async def test_health_tells_the_broker_is_down_and_the_relay_comes_back(
    settings, aiohttp_client, pool, proxy
):
    app = create_app(
        override(settings, amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", outbox_interval_s=0.1)
    )
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {API_KEY}"})

    async def broker_connected() -> bool:
        return (await (await client.get("/health")).json())["broker_connected"]

    assert await broker_connected()
    await proxy.cut()
    await wait_for(lambda: _not(broker_connected()), timeout=10, interval=0.05)
    # accepted while the broker is down: answered at once, the message waits in the outbox
    resp = await client.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 5})
    assert resp.status == 200
    task_id = (await resp.json())["task_id"]
    assert not await broker_connected() and len(await _unmarked(pool)) == 1

    await proxy.restore()
    await wait_for(broker_connected, timeout=20)
    await wait_for(lambda: outbox_drained(pool), timeout=20)  # the sweep takes it after 5 s
    assert await _messages(settings.queue_prefix) == [f'{{"task_id":"{task_id}"}}']


async def test_the_relay_keeps_publishing_after_the_broker_closes_its_connection(settings, pool):
    topology = broker.Topology(settings.queue_prefix)
    relay = OutboxRelay(pool, AMQP_URL, topology, 0.1, name=f"{topology.prefix}.relay", sweep_min_age_s=0)
    stop = asyncio.Event()
    assert await relay.try_connect()
    runner = asyncio.create_task(relay.run(stop))
    try:
        assert await close_broker_connection(f"{topology.prefix}.relay") == 1
        row = await outbox.add(pool, broker.SCORE_TASKS, TASKS_BODY)
        await relay.publish_now([row], broker.SCORE_TASKS, TASKS_BODY)  # now, or by the sweep
        await wait_for(lambda: outbox_drained(pool), timeout=20)
        await wait_for(lambda: _now(relay.connected), timeout=20)
    finally:
        stop.set()
        await runner
        await relay.close()
    assert len(await _messages(settings.queue_prefix)) == 1


async def _empty(values) -> bool:
    return not await values


async def _not(value) -> bool:
    return not await value


async def _now(value: object) -> object:
    return value
