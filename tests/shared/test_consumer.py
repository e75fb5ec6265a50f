from __future__ import annotations

import asyncio
import json

import aio_pika
import asyncpg
import pytest

from shared import broker, errors
from shared.consumer import RetryPolicy, run_consumer
from shared.schemas import ScoreTask
from tests.conftest import AMQP_URL, PG_ROOT, wait_for
from tests.shared.faults import TcpProxy, close_broker_connection

TASK = "7b6c3c3e-8a0b-4c55-9e43-1f2c1c0f8a11"
OTHER = "0e4b1f9a-61c7-4f0e-9d55-3a2a8c1b7d02"
FAST = RetryPolicy(initial_s=0.01, max_s=0.05, retries=2)


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


def _start(channel, topology, dead, handler, *, prefetch=2, grace_s=2.0, retry=FAST):
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
            prefetch=prefetch,
            grace_s=grace_s,
            retry=retry,
        )
    )
    return stop, task


async def _run(channel, topology, dead, handler, until, **options):
    stop, task = _start(channel, topology, dead, handler, **options)
    await asyncio.wait_for(until.wait(), timeout=10)
    await asyncio.sleep(0.2)  # let the loop ack / dead-letter what it just handled
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def _drain(channel, queue_name):
    queue = await channel.get_queue(queue_name)
    found = []
    while (message := await queue.get(fail=False, timeout=2)) is not None:
        found.append(message)
        await message.ack()
    return found


async def _dead_messages(channel, topology):
    return await _drain(channel, topology.dead_queue(broker.SCORE_TASKS))


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
    assert await _drain(channel, topology.queue(broker.SCORE_TASKS)) == []
    assert await _dead_messages(channel, topology) == []


async def test_invalid_body_and_permanent_errors_are_dead_lettered_with_reason(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, {"task_id": "not-a-uuid"})
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    calls = []
    done = asyncio.Event()

    async def handler(body):
        calls.append(body)
        done.set()
        raise errors.Permanent("counter is gone")

    await _run(channel, topology, dead, handler, done)
    assert len(calls) == 1  # not retried
    dead_messages = await _dead_messages(channel, topology)
    reasons = sorted(m.headers["x-error"] for m in dead_messages)
    assert len(reasons) == 2
    assert reasons[0].startswith("Permanent: counter is gone")
    assert reasons[1].startswith("invalid message")
    assert {json.loads(m.body)["task_id"] for m in dead_messages} == {"not-a-uuid", TASK}


async def test_a_bug_is_retried_then_dead_lettered_with_the_reason(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    calls = []
    done = asyncio.Event()

    async def handler(body):
        calls.append(body.task_id)
        if len(calls) == FAST.retries + 1:
            done.set()
        raise RuntimeError("a bug")

    await _run(channel, topology, dead, handler, done)
    assert len(calls) == FAST.retries + 1
    dead_messages = await _dead_messages(channel, topology)
    assert len(dead_messages) == 1
    assert dead_messages[0].headers["x-error"] == "RuntimeError: a bug"
    assert dead_messages[0].headers["x-attempts"] == FAST.retries
    assert json.loads(dead_messages[0].body) == {"task_id": TASK}
    assert await _drain(channel, topology.queue(broker.SCORE_TASKS)) == []


async def test_an_unavailable_dependency_is_waited_out_never_dead_lettered(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=OTHER))
    outage = [
        errors.Unavailable("Metrika is down"),
        ConnectionRefusedError("postgres refused"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        TimeoutError(),
    ] * 2  # more failures than FAST.retries: an outage is never counted against the message
    calls = []
    done = asyncio.Event()

    async def handler(body):
        calls.append(str(body.task_id))
        if outage:
            raise outage.pop(0)
        if str(body.task_id) == OTHER:
            done.set()

    # prefetch 1: the failing message is held through its wait and then requeued at the head of the
    # queue, so nothing else is taken while the dependency is down
    await _run(channel, topology, dead, handler, done, prefetch=1)
    assert calls == [TASK] * 9 + [OTHER]
    assert await _dead_messages(channel, topology) == []
    assert await _drain(channel, topology.queue(broker.SCORE_TASKS)) == []


async def test_real_outage_errors_count_as_unavailable(database_url):
    with pytest.raises(OSError) as refused:
        await asyncpg.connect(f"{PG_ROOT.rsplit(':', 1)[0]}:1/postgres", timeout=5)
    conn = await asyncpg.connect(database_url)
    try:
        admin = await asyncpg.connect(database_url)
        await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await admin.close()
        await wait_for(lambda: _now(conn.is_closed()), timeout=10, interval=0.01)
        with pytest.raises(Exception) as terminated:
            await conn.fetchval("SELECT 1")
    finally:
        conn.terminate()
    with pytest.raises(Exception) as no_broker:
        await aio_pika.connect("amqp://guest:guest@127.0.0.1:1/", timeout=5)

    for exc in (refused.value, terminated.value, no_broker.value, errors.Unavailable()):
        assert errors.is_unavailable(exc), repr(exc)
    assert errors.is_unavailable(ExceptionGroup("all down", [refused.value, errors.Unavailable()]))
    for exc in (
        errors.Permanent(),
        ValueError("a bug"),
        FileNotFoundError("/tmp/missing"),
        ExceptionGroup("one bug among outages", [refused.value, KeyError("x")]),
    ):
        assert not errors.is_unavailable(exc), repr(exc)


def test_retry_delays_double_up_to_the_cap_with_jitter():
    policy = RetryPolicy(initial_s=0.5, max_s=30.0, retries=5)
    for attempt, full in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (1000, 30.0)]:
        for _ in range(20):
            assert full / 2 <= policy.delay(attempt) <= full


async def test_stop_requeues_work_that_did_not_finish(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    started = asyncio.Event()

    async def handler(body):
        started.set()
        await asyncio.sleep(60)

    stop, task = _start(channel, topology, dead, handler, prefetch=1, grace_s=0.2)
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    queue = await channel.get_queue(topology.queue(broker.SCORE_TASKS))
    message = await queue.get(timeout=5)
    assert json.loads(message.body) == {"task_id": TASK} and message.redelivered
    await message.ack()


async def test_stop_interrupts_a_backoff_and_requeues(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    failed = asyncio.Event()

    async def handler(body):
        failed.set()
        raise errors.Unavailable("Metrika is down")

    slow = RetryPolicy(initial_s=600, max_s=600, retries=5)
    stop, task = _start(channel, topology, dead, handler, prefetch=1, grace_s=600, retry=slow)
    await asyncio.wait_for(failed.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=10)  # neither the 600 s wait nor the 600 s grace
    assert [json.loads(m.body) for m in await _drain(channel, topology.queue(broker.SCORE_TASKS))] == [
        {"task_id": TASK}
    ]
    assert await _dead_messages(channel, topology) == []


async def test_stop_returns_even_if_a_handler_ignores_cancellation(channel, queue_prefix):
    topology, exchange, dead = await _setup(channel, queue_prefix)
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(body):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()  # a handler that will not be hurried
        finally:
            finished.set()

    stop, task = _start(channel, topology, dead, handler, prefetch=1, grace_s=0.2)
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=15)  # grace_s + a few seconds, not the handler's pleasure
    assert not finished.is_set()
    release.set()
    await asyncio.wait_for(finished.wait(), timeout=5)


async def test_consumption_resumes_after_the_broker_drops_the_connection(channel, queue_prefix):
    topology, exchange, _ = await _setup(channel, queue_prefix)
    name = f"{queue_prefix}.consumer"
    connection = await broker.connect(AMQP_URL, name=name, reconnect_interval_s=0.2)
    seen = []
    first, second = asyncio.Event(), asyncio.Event()

    async def handler(body):
        seen.append(str(body.task_id))
        (first if len(seen) == 1 else second).set()

    try:
        consumer_channel = await connection.channel(publisher_confirms=True)
        dead = await consumer_channel.get_exchange(topology.dead_exchange)
        stop, task = _start(consumer_channel, topology, dead, handler)
        await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
        await asyncio.wait_for(first.wait(), timeout=10)

        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())
        assert await close_broker_connection(name) == 1
        await asyncio.wait_for(reconnected.wait(), timeout=10)
        await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=OTHER))
        await asyncio.wait_for(second.wait(), timeout=20)
        assert broker.is_connected(connection)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    finally:
        await connection.close()
    assert seen == [TASK, OTHER]


async def _now(value: object) -> object:
    return value


async def test_stop_does_not_hang_while_the_broker_is_away(channel, queue_prefix):
    topology, exchange, _ = await _setup(channel, queue_prefix)
    proxy = TcpProxy(5672)
    await proxy.restore()
    connection = await broker.connect(f"amqp://guest:guest@127.0.0.1:{proxy.port}/", reconnect_interval_s=0.2)
    started = asyncio.Event()

    async def handler(body):
        started.set()
        await asyncio.sleep(60)

    try:
        consumer_channel = await connection.channel(publisher_confirms=True)
        dead = await consumer_channel.get_exchange(topology.dead_exchange)
        stop, task = _start(consumer_channel, topology, dead, handler, prefetch=1, grace_s=0.2)
        await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=TASK))
        await asyncio.wait_for(started.wait(), timeout=10)
        await proxy.cut()  # the broker is gone while a handler runs
        stop.set()
        await asyncio.wait_for(task, timeout=10)  # no nack, cancel or close waits for the broker
    finally:
        await asyncio.wait_for(connection.close(), timeout=10)
        await proxy.cut()
    # the broker took the unacked message back when the connection dropped
    [message] = await _drain(channel, topology.queue(broker.SCORE_TASKS))
    assert json.loads(message.body) == {"task_id": TASK}
