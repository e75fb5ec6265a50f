from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import aio_pika
import asyncpg
import pytest

from gateway.dead_letters import DeadLetterRecorder
from shared import broker, db, errors
from shared.consumer import RetryPolicy, serve
from shared.db import tasks
from shared.schemas import ScoreTask
from tests.conftest import AMQP_URL, PG_ROOT, wait_for
from tests.shared.faults import TcpProxy

FAST = RetryPolicy(initial_s=0.05, max_s=0.2, retries=1)


@pytest.fixture
async def amqp(queue_prefix):
    """A plain channel on the test's topology, to publish and to look at queues."""
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    await broker.declare(channel, broker.Topology(queue_prefix))
    yield channel
    await connection.close()


async def _publish_raw(channel, prefix, body: bytes, routing_key=broker.SCORE_TASKS):
    exchange = await channel.get_exchange(broker.Topology(prefix).exchange)
    await exchange.publish(aio_pika.Message(body, content_type="application/json"), routing_key=routing_key)


async def _listing(gateway, query=""):
    resp = await gateway.get(f"/dead-letters{query}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _queue_is_empty(channel, name):
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count == 0


async def test_a_poison_message_is_listed_with_its_reason_and_replayed_once_fixed(
    gateway, settings, pool, amqp, queue_prefix
):
    """Fault test 6: a message naming a task that does not exist is dead-lettered with the reason,
    listed, and succeeds when replayed after the task exists."""
    topology = broker.Topology(queue_prefix)
    handled = []
    success = asyncio.Event()

    async def handler(body: ScoreTask) -> None:
        if await tasks.get(pool, body.task_id) is None:
            raise errors.Permanent(f"task {body.task_id} does not exist")
        handled.append(str(body.task_id))
        success.set()

    stop = asyncio.Event()
    connection = await broker.connect(AMQP_URL)
    consumer = asyncio.create_task(
        serve(
            connection,
            topology,
            broker.SCORE_TASKS,
            ScoreTask,
            handler,
            stop,
            prefetch=2,
            grace_s=2,
            retry=FAST,
        )
    )
    try:
        task_id = uuid.uuid4()
        await _publish_raw(amqp, queue_prefix, ScoreTask(task_id=task_id).model_dump_json().encode())
        await _publish_raw(amqp, queue_prefix, b'{"task_id": "not-a-uuid"}')

        listing = await wait_for(
            lambda: _when(_listing(gateway), lambda page: page["pagination"]["total"] == 2)
        )
        by_body = {json.dumps(item["body"]): item for item in listing["data"]}
        poison = by_body[json.dumps({"task_id": str(task_id)})]
        invalid = by_body[json.dumps({"task_id": "not-a-uuid"})]
        assert poison["routing_key"] == broker.SCORE_TASKS
        assert poison["reason"] == f"Permanent: task {task_id} does not exist"
        assert invalid["reason"].startswith("invalid message: 1 error(s)")
        assert poison["replayed_at"] is None and poison["replay_count"] == 0
        assert listing["pagination"] == {"total": 2, "limit": 100, "offset": 0, "has_more": False}
        assert [item["id"] for item in listing["data"]] == sorted(by_body[k]["id"] for k in by_body)[::-1]
        assert await _queue_is_empty(amqp, topology.dead_queue(broker.SCORE_TASKS))  # recorded, acked

        # the cause is fixed: the task exists now
        await tasks.insert(pool, task_id, dt.date.today() - dt.timedelta(days=1), 1, b"x")
        resp = await gateway.post(f"/dead-letters/{poison['id']}/replay")
        assert resp.status == 202
        assert await resp.json() == {"id": poison["id"], "status": "replayed"}
        await asyncio.wait_for(success.wait(), timeout=20)
        assert handled == [str(task_id)]
    finally:
        stop.set()
        await consumer
        await connection.close()

    replayed = await _listing(gateway, "?replayed=true")
    assert [item["id"] for item in replayed["data"]] == [poison["id"]]
    assert replayed["data"][0]["replay_count"] == 1 and replayed["data"][0]["replayed_at"] is not None
    waiting = await _listing(gateway, "?replayed=false&routing_key=score_tasks")
    assert [item["id"] for item in waiting["data"]] == [invalid["id"]]
    assert (await _listing(gateway, "?routing_key=conversion_uploads"))["data"] == []
    page = await _listing(gateway, "?limit=1&offset=1")
    assert page["pagination"] == {"total": 2, "limit": 1, "offset": 1, "has_more": False}
    assert [item["id"] for item in page["data"]] == [min(poison["id"], invalid["id"])]
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 2  # the replay did not fail again


async def test_what_rabbitmq_dead_letters_is_recorded_too(gateway, amqp, queue_prefix):
    topology = broker.Topology(queue_prefix)
    await _publish_raw(amqp, queue_prefix, b"\xff not json", routing_key=broker.CONVERSION_UPLOADS)
    queue = await amqp.get_queue(topology.queue(broker.CONVERSION_UPLOADS))
    message = await queue.get(timeout=5)
    await message.reject(requeue=False)  # the queue's own dead-letter exchange takes it

    listing = await wait_for(lambda: _when(_listing(gateway), lambda page: page["data"]))
    [item] = listing["data"]
    assert item["routing_key"] == broker.CONVERSION_UPLOADS
    assert item["reason"] == f"rejected by RabbitMQ in queue {topology.queue(broker.CONVERSION_UPLOADS)}"
    assert item["body"] == "\ufffd not json"  # not JSON: shown as text
    resp = await gateway.post(f"/dead-letters/{item['id']}/replay")
    assert resp.status == 409
    assert "not a JSON object" in (await resp.json())["detail"]


async def test_the_recorder_waits_out_postgres_being_down(database_url, amqp, queue_prefix, caplog):
    topology = broker.Topology(queue_prefix)
    proxy = TcpProxy(int(PG_ROOT.rsplit(":", 1)[1]))
    await proxy.restore()
    database = database_url.rsplit("/", 1)[1]
    pool = await db.create_pool(f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}")
    recorder = DeadLetterRecorder(pool, AMQP_URL, topology, FAST)
    stop = asyncio.Event()
    running = asyncio.create_task(recorder.run(stop))
    dead_queue = topology.dead_queue(broker.SCORE_TASKS)

    def failures() -> int:
        return sum(dead_queue in r.getMessage() and "waits" in r.getMessage() for r in caplog.records)

    try:
        await proxy.cut()  # Postgres is gone, as far as the recorder can tell
        dead = await amqp.get_exchange(topology.dead_exchange)
        message = aio_pika.Message(b'{"task_id": "x"}', headers={"x-error": "Permanent: test"})
        await dead.publish(message, routing_key=broker.SCORE_TASKS)
        # taken, not stored, requeued after a wait, taken again: kept, not dropped
        await wait_for(lambda: _now(failures() >= 2), timeout=20, interval=0.05)
        await proxy.restore()
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM dead_letters"), timeout=30)
        await wait_for(lambda: _queue_is_empty(amqp, dead_queue), timeout=10)
    finally:
        stop.set()
        await running
        await pool.close()
        await proxy.cut()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT routing_key, reason, body FROM dead_letters")
    finally:
        await conn.close()
    assert [(r["routing_key"], r["reason"], r["body"]) for r in rows] == [
        (broker.SCORE_TASKS, "Permanent: test", b'{"task_id": "x"}')
    ]


async def test_the_endpoints_check_their_input(gateway):
    resp = await gateway.post("/dead-letters/12345/replay")
    assert resp.status == 404 and await resp.json() == {"detail": "Dead letter not found"}
    for bad in ("abc", "0", "-1", str(2**63)):
        resp = await gateway.post(f"/dead-letters/{bad}/replay")
        assert resp.status == 422, bad
        assert (await resp.json())["detail"][0]["loc"] == ["path", "id"]
    for query in ("?limit=0", "?limit=1001", "?offset=-1", "?routing_key=nope", "?replayed=maybe"):
        resp = await gateway.get(f"/dead-letters{query}")
        assert resp.status == 422, query
        assert (await resp.json())["detail"][0]["loc"][0] == "query"
    gateway.session.headers.pop("Authorization")
    assert (await gateway.get("/dead-letters")).status == 401
    assert (await gateway.post("/dead-letters/1/replay")).status == 401


async def _when(value, check):
    result = await value
    return result if check(result) else None


async def _now(value: object) -> object:
    return value
