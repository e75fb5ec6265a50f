"""Postgres away under a running gateway: every endpoint answers 503 with a JSON detail and Retry-After
(never a 500), /health says so, and the gateway recovers by itself once Postgres is back.

The test database is taken away without stopping the machine's Postgres: its connections are terminated
and new ones refused (ALLOW_CONNECTIONS false), then it is given back."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg

from tests.conftest import PG_ROOT, wait_for

YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()
HOOKS = "/webhook/offline-conversions"


def conversion() -> dict[str, str]:
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    return {"client_id": "1234567890.1234567890", "target": "purchase", "date_time": when}


async def test_postgres_away_is_503_then_recovery(gateway, settings):
    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 1})
    task_id = (await resp.json())["task_id"]
    hook = await (await gateway.post(HOOKS, json={"name": "crm", "counter_id": 1, "token": "t"})).json()
    secret = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    submit = f"{HOOKS}/{hook['webhook_id']}"
    assert (await gateway.post(submit, json={"conversions": [conversion()]}, headers=secret)).status == 200

    name = settings.database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )

            async def no_backends() -> bool:
                count = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
                return count == 0

            await wait_for(no_backends, timeout=10)
            body = {"conversions": [conversion()]}
            calls = [
                gateway.get(f"/tasks/{task_id}/status"),
                gateway.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 1}),
                gateway.get(HOOKS),
                # concurrent submissions share one statement (gateway.intake): the group fails as a whole
                *(gateway.post(submit, json=body, headers=secret) for _ in range(8)),
            ]
            for resp in await asyncio.gather(*calls):
                assert resp.status == 503, (resp.url, await resp.text())
                assert isinstance((await resp.json())["detail"], str)
                assert resp.headers["Retry-After"].isdigit()

            resp = await gateway.get("/health")
            assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
            body = await resp.json()
            assert body["status"] == "unavailable" and body["database"] is False
            assert set(body) >= {"broker_connected", "outbox_pending"}
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        await admin.close()

    # no restart: the pools reconnect on their own
    async def answered() -> bool:
        return (await gateway.get(f"/tasks/{task_id}/status")).status == 200

    await wait_for(answered, timeout=15)
    resp = await gateway.get("/health")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    assert (await resp.json())["database"] is True
    resp = await gateway.post(submit, json={"conversions": [conversion()]}, headers=secret)
    assert resp.status == 200, await resp.text()
    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 1})
    assert resp.status == 200 and uuid.UUID((await resp.json())["task_id"])
