from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from shared import broker, errors
from shared.consumer import run_consumer
from shared.schemas import ScoreTask
from tests.conftest import AMQP_URL

TASK = "7b6c3c3e-8a0b-4c55-9e43-1f2c1c0f8a11"


@pytest.fixture
async def channel(queue_prefix):
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    yield channel
    await connection.close()


async def _setup(channel, prefix):
    topology = broker.Topology(prefix)
    exchange = await broker.declare(channel, topology)
    dead = await channel.get_exchange(topology.dead_exchange)
    return topology, exchange, dead


async def _run(channel, topology, dead, handler, until):
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            channel,
            topology.queue(broker.SCORE_TASKS),
            ScoreTask,
            handler,
            stop,
            dead_exchange=dead,
            dead_routing_key=broker.SCORE_TASKS,
            prefetch=2,
            grace_s=2,
        )
    )
    await asyncio.wait_for(until.wait(), timeout=10)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def _dead_messages(channel, topology):
    queue = await channel.get_queue(topology.dead_queue(broker.SCORE_TASKS))
    found = []
    while (message := await queue.get(fail=False, timeout=2)) is not None:
        found.append(message)
        await message.ack()
    return found


async def test_success_is_acked(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    seen = []
    done = asyncio.Event()

    async def handler(body):
        seen.append(body.task_id)
        done.set()

    await _run(channel, topology, dead, handler, done)
    assert [str(t) for t in seen] == [TASK]
    queue = await channel.get_queue(topology.queue(broker.SCORE_TASKS))
    assert await queue.get(fail=False, timeout=2) is None
    assert await _dead_messages(channel, topology) == []


async def test_invalid_body_and_permanent_errors_are_dead_lettered_with_reason(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, {"task_id": "not-a-uuid"})
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    done = asyncio.Event()

    async def handler(body):
        done.set()
        raise errors.Permanent("counter is gone")

    await _run(channel, topology, dead, handler, done)
    dead_messages = await _dead_messages(channel, topology)
    reasons = sorted(m.headers["x-error"] for m in dead_messages)
    assert len(reasons) == 2
    assert reasons[0].startswith("Permanent: counter is gone")
    assert reasons[1].startswith("invalid message")
    assert {json.loads(m.body)["task_id"] for m in dead_messages} == {"not-a-uuid", TASK}


async def test_unexpected_error_is_retried_once_then_dead_lettered(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    calls = []
    done = asyncio.Event()

    async def handler(body):
        calls.append(body.task_id)
        if len(calls) == 2:
            done.set()
        raise RuntimeError("database hiccup")

    await _run(channel, topology, dead, handler, done)
    assert len(calls) == 2
    dead_messages = await _dead_messages(channel, topology)
    assert len(dead_messages) == 1 and "RuntimeError: database hiccup" in dead_messages[0].headers["x-error"]


async def test_stop_requeues_work_that_did_not_finish(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    started = asyncio.Event()

    async def handler(body):
        started.set()
        await asyncio.sleep(60)

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            channel,
            topology.queue(broker.SCORE_TASKS),
            ScoreTask,
            handler,
            stop,
            dead_exchange=dead,
            dead_routing_key=broker.SCORE_TASKS,
            prefetch=1,
            grace_s=0.2,
        )
    )
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    queue = await channel.get_queue(topology.queue(broker.SCORE_TASKS))
    message = await queue.get(timeout=5)
    assert json.loads(message.body) == {"task_id": TASK} and message.redelivered
    await message.ack()
