from __future__ import annotations

import asyncio
import datetime as dt

import aio_pika

from gateway.app import create_app
from shared import broker
from shared.relay import OutboxRelay
from tests.conftest import AMQP_URL, API_KEY, outbox_drained, override, wait_for

YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()


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
    relay = OutboxRelay(pool, AMQP_URL, broker.Topology(settings.queue_prefix), interval_s=0.1)
    stop = asyncio.Event()
    runner = asyncio.create_task(relay.run(stop))
    try:
        await wait_for(lambda: outbox_drained(pool), timeout=30)
    finally:
        stop.set()
        await runner
        await relay.close()

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.Topology(settings.queue_prefix).queue(broker.SCORE_TASKS))
        got = []
        while (message := await queue.get(fail=False, timeout=2)) is not None:
            got.append(message.body.decode())
            await message.ack()
    assert [f'{{"task_id":"{i}"}}' for i in ids] == got
