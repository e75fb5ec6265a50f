from __future__ import annotations

import datetime as dt
import json
import uuid
from zoneinfo import ZoneInfo

import aio_pika
import asyncpg

from shared import broker
from shared.crypto import TokenCipher
from shared.db import tasks
from tests.conftest import AMQP_URL, completed_task, next_message, outbox_drained, override, wait_for

YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()


async def test_create_task_stores_it_and_publishes_a_persistent_message(gateway, settings, pool):
    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "secret-oauth", "counter": 123456})
    assert resp.status == 200
    task_id = uuid.UUID((await resp.json())["task_id"])

    row = await tasks.get(pool, task_id)
    assert row["status"] == "pending" and row["counter"] == 123456 and row["day"].isoformat() == YESTERDAY
    # stored encrypted, never in clear
    assert b"secret-oauth" not in bytes(row["token_enc"])
    assert TokenCipher(settings.token_encryption_key).decrypt(row["token_enc"]) == "secret-oauth"

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.Topology(settings.queue_prefix).queue(broker.SCORE_TASKS))
        message = await next_message(queue)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert json.loads(message.body) == {"task_id": str(task_id)}
        await message.ack()
    await wait_for(lambda: outbox_drained(pool), timeout=5)  # marked published a moment later


async def test_token_and_counter_fall_back_to_settings(gateway, settings, pool):
    resp = await gateway.post("/tasks", json={"date": YESTERDAY})
    assert resp.status == 400
    assert await resp.json() == {"detail": "token is required (in body or env)"}

    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "t"})
    assert resp.status == 400
    assert await resp.json() == {"detail": "counter is required (in body or env)"}
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0


async def test_env_fallback_is_used(settings, aiohttp_client, pool):
    from gateway.app import create_app

    app = create_app(override(settings, metrika_token="env-token", metrika_counter=42))
    client = await aiohttp_client(app, headers={"Authorization": "Bearer test-api-key"})
    resp = await client.post("/tasks", json={"date": YESTERDAY})
    assert resp.status == 200
    row = await tasks.get(pool, uuid.UUID((await resp.json())["task_id"]))
    assert row["counter"] == 42


async def test_bad_dates_are_422_with_a_list(gateway):
    resp = await gateway.post("/tasks", json={"date": "2025-13-45", "token": "t", "counter": 1})
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert isinstance(detail, list) and detail[0]["loc"][:2] == ["body", "date"]
    resp = await gateway.post("/tasks", json={"token": "t", "counter": 1})
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert detail[0]["loc"] == ["body"] and "date" in detail[0]["msg"] and "required" in detail[0]["msg"]
    # counter 1's zone is not readable with token "t": COUNTER_TIMEZONE's (Moscow) today is its today
    today = dt.datetime.now(ZoneInfo("Europe/Moscow")).date()
    for day in (today, today + dt.timedelta(days=3)):
        resp = await gateway.post("/tasks", json={"date": day.isoformat(), "token": "t", "counter": 1})
        assert resp.status == 422
        assert "past" in (await resp.json())["detail"][0]["msg"]


async def test_invalid_json_and_unknown_fields_are_422(gateway):
    resp = await gateway.post("/tasks", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 422
    assert (await resp.json())["detail"][0]["type"] == "json_invalid"
    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": -5})
    assert resp.status == 422


async def test_api_key_is_required(gateway):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        resp = await gateway.post("/tasks", json={"date": YESTERDAY}, headers=headers)
        assert resp.status == 401
        assert "detail" in await resp.json()
        resp = await gateway.get(f"/tasks/{uuid.uuid4()}/status", headers=headers)
        assert resp.status == 401
    resp = await gateway.get("/health", headers={"Authorization": ""})
    assert resp.status == 200


async def test_unknown_task_is_404(gateway):
    for path in (
        f"/tasks/{uuid.uuid4()}/status",
        f"/tasks/{uuid.uuid4()}/result",
        "/tasks/not-a-uuid/status",
    ):
        resp = await gateway.get(path)
        assert resp.status == 404
        assert await resp.json() == {"detail": "Task not found"}


async def test_status_of_a_pending_task_and_result_not_finished(gateway):
    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 7})
    task_id = (await resp.json())["task_id"]
    resp = await gateway.get(f"/tasks/{task_id}/status")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "pending" and body["progress"] == 0
    assert {"status", "progress", "message", "started_at", "finished_at", "error"} <= set(body)
    resp = await gateway.get(f"/tasks/{task_id}/result")
    assert resp.status == 409
    assert await resp.json() == {"detail": "Task not finished"}


async def _completed_task(pool: asyncpg.Pool, n: int) -> uuid.UUID:
    return await completed_task(pool, n, start=dt.datetime(2025, 7, 1, 12), duration_step=1)


async def test_result_pagination_and_opaque_ids(gateway, pool):
    task_id = await _completed_task(pool, 25)
    resp = await gateway.get(f"/tasks/{task_id}/result", params={"limit": 10, "offset": 20})
    assert resp.status == 200
    body = await resp.json()
    assert body["pagination"] == {"total": 25, "limit": 10, "offset": 20, "has_more": False}
    assert len(body["data"]) == 5
    first = body["data"][0]
    assert first["visitId"] == str(2**64 - 1 - 20) and first["clientId"] == str(2**63 + 20)
    assert first["dateTime"] == "2025-07-01 12:00:20" and first["visitDuration"] == 120
    assert first["model_version"] == "v1" and first["score"] == 0.9

    resp = await gateway.get(f"/tasks/{task_id}/result")
    assert (await resp.json())["pagination"] == {"total": 25, "limit": 100, "offset": 0, "has_more": False}
    resp = await gateway.get(f"/tasks/{task_id}/result", params={"limit": 10})
    assert (await resp.json())["pagination"]["has_more"] is True


async def test_result_limit_bounds(gateway, pool):
    task_id = await _completed_task(pool, 1)
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "ten"}):
        resp = await gateway.get(f"/tasks/{task_id}/result", params=params)
        assert resp.status == 422, params
        assert (await resp.json())["detail"][0]["loc"][0] == "query"
