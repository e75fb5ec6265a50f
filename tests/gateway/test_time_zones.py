"""A conversion `date_time` without a zone is read in its counter's time zone (from the Management API):
single conversions, JSON webhooks and bulk uploads; on real Postgres, RabbitMQ and the sandbox."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from sandbox.app import FAULTS, REQUEST_LOG
from shared.crypto import TokenCipher
from shared.db import bulk
from tests.conftest import completed_task

TOKEN = "sandbox-token"
MOSCOW_COUNTER = 4242
NOVOSIBIRSK_COUNTER = 54_000_001  # the sandbox's default rule: 54xxxxxx is Asia/Novosibirsk
BASE = "/webhook/offline-conversions"


def local_now(hours_ago: float, zone: str) -> dt.datetime:
    """A naive wall-clock time `hours_ago` hours ago in `zone`, to the second."""
    return (dt.datetime.now(ZoneInfo(zone)) - dt.timedelta(hours=hours_ago)).replace(
        microsecond=0, tzinfo=None
    )


def asked(sandbox, counter: int) -> int:
    return len(sandbox.app[REQUEST_LOG].find("GET", f"/management/v1/counter/{counter}"))


async def stored_times(pool, batch_id: str) -> list[dt.datetime]:
    rows = await pool.fetch(
        "SELECT date_time FROM conversions WHERE batch_id = $1 ORDER BY idx", uuid.UUID(batch_id)
    )
    return [row["date_time"] for row in rows]


async def single(gateway, counter: int, naive: dt.datetime) -> str:
    body = {"client_id": "17508569", "target": "purchase", "date_time": naive.isoformat()}
    resp = await gateway.post("/conversions/single", json={**body, "counter": counter, "token": TOKEN})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["upload_id"])


async def test_a_single_conversion_is_read_in_its_counters_zone(gateway, sandbox, pool):
    naive = local_now(6, "Asia/Novosibirsk")
    upload_id = await single(gateway, NOVOSIBIRSK_COUNTER, naive)
    assert await stored_times(pool, upload_id) == [(naive - dt.timedelta(hours=7)).replace(tzinfo=dt.UTC)]

    upload_id = await single(gateway, MOSCOW_COUNTER, naive)
    assert await stored_times(pool, upload_id) == [(naive - dt.timedelta(hours=3)).replace(tzinfo=dt.UTC)]

    await single(gateway, NOVOSIBIRSK_COUNTER, naive)
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1  # kept: asked once


async def test_a_time_with_a_zone_keeps_its_own(gateway, pool):
    naive = local_now(6, "Asia/Novosibirsk")
    body = {"client_id": "1", "target": "purchase", "date_time": f"{naive.isoformat()}+03:00"}
    resp = await gateway.post(
        "/conversions/single", json={**body, "counter": NOVOSIBIRSK_COUNTER, "token": TOKEN}
    )
    assert resp.status == 200, await resp.text()
    upload_id = (await resp.json())["upload_id"]
    assert await stored_times(pool, upload_id) == [(naive - dt.timedelta(hours=3)).replace(tzinfo=dt.UTC)]


async def test_counter_timezone_is_the_fallback_while_metrika_fails(gateway, sandbox, pool):
    sandbox.app[FAULTS].add(r"/management/v1/counter/\d+$", 503, times=None)
    naive = local_now(3, "Europe/Moscow")
    upload_id = await single(gateway, NOVOSIBIRSK_COUNTER, naive)
    assert await stored_times(pool, upload_id) == [(naive - dt.timedelta(hours=3)).replace(tzinfo=dt.UTC)]


async def test_a_webhook_reads_its_counters_zone_without_asking_metrika_per_request(gateway, sandbox, pool):
    resp = await gateway.post(BASE, json={"name": "n", "counter_id": NOVOSIBIRSK_COUNTER, "token": TOKEN})
    assert resp.status == 200, await resp.text()
    hook = await resp.json()
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1  # fetched at creation

    naive = local_now(6, "Asia/Novosibirsk")
    headers = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    batch_ids = []
    for client_id in ("1", "2", "3"):
        conversion = {"client_id": client_id, "target": "purchase", "date_time": naive.isoformat()}
        resp = await gateway.post(
            f"{BASE}/{hook['webhook_id']}", json={"conversions": [conversion]}, headers=headers
        )
        assert resp.status == 200, await resp.text()
        batch_ids.append((await resp.json())["batch_id"])
    for batch_id in batch_ids:
        assert await stored_times(pool, batch_id) == [(naive - dt.timedelta(hours=7)).replace(tzinfo=dt.UTC)]
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1  # none per submission

    # moved to a Moscow counter: that counter's zone is fetched with the change
    resp = await gateway.patch(f"{BASE}/{hook['webhook_id']}", json={"counter_id": MOSCOW_COUNTER})
    assert resp.status == 200, await resp.text()
    assert asked(sandbox, MOSCOW_COUNTER) == 1
    conversion = {"client_id": "4", "target": "purchase", "date_time": naive.isoformat()}
    resp = await gateway.post(
        f"{BASE}/{hook['webhook_id']}", json={"conversions": [conversion]}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    batch_id = (await resp.json())["batch_id"]
    assert await stored_times(pool, batch_id) == [(naive - dt.timedelta(hours=3)).replace(tzinfo=dt.UTC)]


async def test_a_bulk_upload_reads_visit_times_in_the_counters_zone(gateway, settings, pool):
    start = local_now(30, "Asia/Novosibirsk")
    token_enc = TokenCipher(settings.token_encryption_key).encrypt(TOKEN)
    task_id = await completed_task(pool, 2, start=start, counter=NOVOSIBIRSK_COUNTER, token_enc=token_enc)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": "4plus"})
    assert resp.status == 200, await resp.text()
    upload_id = (await resp.json())["upload_id"]
    await bulk.expand(pool, uuid.UUID(upload_id))  # its rows, as the uploader makes them (shared/db/bulk.py)
    first = (start - dt.timedelta(hours=7)).replace(tzinfo=dt.UTC)
    assert await stored_times(pool, upload_id) == [first, first + dt.timedelta(seconds=1)]
