"""Idempotency-Key on JSON webhooks and POST /conversions/single: a repeat gets the original answer and
never a second batch (held by Postgres' primary key, so it holds across replicas and concurrent repeats)."""

from __future__ import annotations

import asyncio
import datetime as dt

from sandbox.app import CONVERSIONS, VISITORS
from tests.conftest import wait_for
from uploader.main import main as uploader_main

COUNTER = 8181
HOUR_AGO = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()


def _row(client_id: str, **extra):
    return {"client_id": client_id, "target": "purchase", "date_time": HOUR_AGO, **extra}


async def _webhook(gateway):
    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token"}
    )
    return await resp.json()


async def _submit(gateway, hook, rows, key=None, query=""):
    headers = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}{query}",
        json={"conversions": rows},
        headers=headers,
    )


async def _batches(pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM batches"))


async def test_a_repeated_webhook_request_gets_its_original_answer_and_uploads_once(
    gateway, settings, sandbox, pool, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["1", "2", "3", "4"])
    hook = await _webhook(gateway)
    rows = [_row("1"), _row("2")]
    first = await _submit(gateway, hook, rows, key="order-77")
    assert first.status == 200
    original = await first.json()
    again = await _submit(gateway, hook, rows, key="order-77")
    assert again.status == 200 and await again.json() == original
    # several repeats at once: still one batch
    others = [_row("3"), _row("4")]
    answers = await asyncio.gather(*(_submit(gateway, hook, others, key="order-78") for _ in range(6)))
    bodies = [await resp.json() for resp in answers]
    assert {resp.status for resp in answers} == {200}
    assert len({body["batch_id"] for body in bodies}) == 1
    assert await _batches(pool) == 2

    run_service(uploader_main, settings)

    async def both_final():
        statuses = await pool.fetch("SELECT status FROM batches")
        return all(r["status"] in ("completed", "error") for r in statuses)

    await wait_for(both_final)
    sent = sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))
    assert sent == ["1", "2", "3", "4"]  # two keys, two batches of two rows, each row once


async def test_the_same_key_with_another_body_is_a_conflict(gateway, pool):
    hook = await _webhook(gateway)
    assert (await _submit(gateway, hook, [_row("1")], key="k1")).status == 200
    resp = await _submit(gateway, hook, [_row("2")], key="k1")
    assert resp.status == 409 and "different request" in (await resp.json())["detail"]
    # the query string is part of the request too
    resp = await _submit(gateway, hook, [_row("1")], key="k1", query="?partial=true")
    assert resp.status == 409
    assert await _batches(pool) == 1


async def test_a_refused_request_leaves_its_key_to_the_corrected_one(gateway, pool):
    hook = await _webhook(gateway)
    bad = await _submit(gateway, hook, [_row("1", target="")], key="k2")
    assert bad.status == 400
    good = await _submit(gateway, hook, [_row("1")], key="k2")
    assert good.status == 200
    assert await _batches(pool) == 1


async def test_keys_belong_to_their_webhook(gateway, pool):
    one, two = await _webhook(gateway), await _webhook(gateway)
    a = await (await _submit(gateway, one, [_row("1")], key="same")).json()
    b = await (await _submit(gateway, two, [_row("1")], key="same")).json()
    assert a["batch_id"] != b["batch_id"] and await _batches(pool) == 2


async def test_a_malformed_key_is_refused(gateway):
    hook = await _webhook(gateway)
    resp = await _submit(gateway, hook, [_row("1")], key="x" * 300)
    assert resp.status == 400 and "Idempotency-Key" in (await resp.json())["detail"]


async def test_a_repeated_single_conversion_gets_its_upload_id_again(gateway, pool):
    body = {**_row("5"), "counter": COUNTER, "token": "sandbox-token"}
    first = await gateway.post("/conversions/single", json=body, headers={"Idempotency-Key": "crm-5"})
    again = await gateway.post("/conversions/single", json=body, headers={"Idempotency-Key": "crm-5"})
    assert first.status == again.status == 200
    assert await first.json() == await again.json()
    other = await gateway.post(
        "/conversions/single", json={**body, "client_id": "6"}, headers={"Idempotency-Key": "crm-5"}
    )
    assert other.status == 409
    plain = await gateway.post("/conversions/single", json=body)
    assert (await plain.json())["upload_id"] != (await first.json())["upload_id"]
    assert await _batches(pool) == 2
