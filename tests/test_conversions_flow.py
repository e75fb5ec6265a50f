"""Conversions end to end: gateway -> RabbitMQ -> uploader -> Metrika sandbox -> status, on real parts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from gateway import keys
from gateway.app import create_app
from sandbox.app import CONVERSIONS, FAULTS, VISITORS
from scorer.main import main as scorer_main
from shared import broker
from shared.conversions import Conversion, Rules, check_row
from shared.db import batches
from shared.relay import OutboxRelay
from tests.conftest import API_KEY, outbox_drained, override, wait_for
from uploader.main import main as uploader_main

COUNTER = 5151
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
FINAL = ("completed", "error")
# an upload (bulk or single) ends "processed", the replaced API's word; a webhook batch "completed"
UPLOAD_FINAL = ("processed", "error")


def _row(i: int, **extra):
    return {
        "client_id": str(10**18 + i),
        "target": "purchase",
        "date_time": (NOW - dt.timedelta(hours=2)).isoformat(),
        "price": 100 + i,
        "currency": "RUB",
        **extra,
    }


async def _webhook(gateway):
    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token"}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _submit(gateway, hook, conversions):
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}",
        json={"conversions": conversions},
        headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["batch_id"]


async def _batch_status(gateway, hook, batch_id):
    resp = await gateway.get(
        f"/webhook/offline-conversions/{hook['webhook_id']}/status",
        params={"batch_id": batch_id},
        headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
    )
    assert resp.status == 200
    return await resp.json()


async def _final(gateway, hook, batch_id, timeout=60):
    seen = []

    async def done():
        body = await _batch_status(gateway, hook, batch_id)
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        return body if body["status"] in FINAL else None

    body = await wait_for(done, timeout=timeout, interval=0.05)
    return body, seen


def _register(sandbox, client_ids):
    sandbox.app[VISITORS].register(COUNTER, client_ids)


async def test_webhook_batch_with_mixed_ids_is_split_per_type_and_completes(
    gateway, settings, sandbox, run_service
):
    hook = await _webhook(gateway)
    rows = [
        _row(0),
        {"user_id": "crm-user-1", "target": "registration", "date_time": NOW.isoformat()},
        {"yclid": "9876543210123456789", "target": "lead", "date_time": NOW.isoformat()},
        _row(1),
    ]
    _register(sandbox, [rows[0]["client_id"], rows[3]["client_id"]])
    batch_id = await _submit(gateway, hook, rows)
    run_service(uploader_main, settings)

    body, seen = await _final(gateway, hook, batch_id)
    assert body["status"] == "completed", body
    assert body["processed"] == body["total"] == 4 and body["errors"] is None
    assert seen[-1] == "completed" and seen[0] in ("accepted", "pending", "uploaded", "processing")
    assert body["webhook_id"] == hook["webhook_id"] and body["counter_id"] == COUNTER
    assert len(body["metrika_upload_id"].split(",")) == 3

    lines = sandbox.app[CONVERSIONS].lines_for(COUNTER)
    by_type = {}
    for line in lines:
        by_type.setdefault(line.client_id_type, []).append(line.row)
    assert set(by_type) == {"CLIENT_ID", "USER_ID", "YCLID"}
    assert sorted(r["ClientId"] for r in by_type["CLIENT_ID"]) == sorted(
        [rows[0]["client_id"], rows[3]["client_id"]]
    )
    assert by_type["USER_ID"][0]["UserId"] == "crm-user-1" and "ClientId" not in by_type["USER_ID"][0]
    assert by_type["YCLID"][0]["Yclid"] == "9876543210123456789"
    first = next(r for r in by_type["CLIENT_ID"] if r["ClientId"] == rows[0]["client_id"])
    assert (
        first["DateTime"] == str(int((NOW - dt.timedelta(hours=2)).timestamp()))
        and first["Currency"] == "RUB"
    )


async def test_unknown_goal_and_unlinked_visitors_are_reported_truthfully(
    gateway, settings, sandbox, run_service
):
    hook = await _webhook(gateway)
    rows = [_row(0), _row(1, target="no_such_goal"), _row(2)]
    _register(sandbox, [rows[0]["client_id"]])  # row 2's visitor is unknown to Metrika
    batch_id = await _submit(gateway, hook, rows)
    run_service(uploader_main, settings)

    body, _ = await _final(gateway, hook, batch_id)
    assert body["status"] == "completed" and body["total"] == 3
    assert body["processed"] == 2  # the unknown goal never left; both others were processed by Metrika
    reasons = {e.get("index"): e["reason"] for e in body["errors"]}
    assert "no_such_goal" in reasons[1] and "not found" in reasons[1]
    assert any("visitor not found" in r or "not found" in r for i, r in reasons.items() if i is None)
    sent = [line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER)]
    assert sorted(sent) == sorted([rows[0]["client_id"], rows[2]["client_id"]])


async def test_metrika_5xx_storm_ends_truthfully(gateway, settings, sandbox, run_service):
    hook = await _webhook(gateway)
    _register(sandbox, [_row(0)["client_id"]])
    short = await _submit(gateway, hook, [_row(0)])
    sandbox.app[FAULTS].add(r"/offline_conversions/upload$", 503, times=2)
    run_service(uploader_main, override(settings, retry_horizon_s=2.0))
    body, _ = await _final(gateway, hook, short)
    assert body["status"] == "completed" and body["processed"] == 1

    # 429s for longer than the retry horizon: the batch ends in error, saying why and for how long
    sandbox.app[FAULTS].add(r"/offline_conversions/upload$", 429, times=None)
    long = await _submit(gateway, hook, [_row(5)])
    body, _ = await _final(gateway, hook, long)
    sandbox.app[FAULTS].clear()
    assert body["status"] == "error" and body["processed"] == 0
    row_error = next(e for e in body["errors"] if e.get("index") == 0)
    assert "kept failing for" in row_error["reason"] and "429" in row_error["reason"]
    assert len(sandbox.app[CONVERSIONS].lines_for(COUNTER)) == 1


async def test_answer_lost_after_metrika_stored_the_upload_is_not_sent_twice(
    gateway, settings, sandbox, run_service
):
    hook = await _webhook(gateway)
    rows = [_row(i) for i in range(5)]
    _register(sandbox, [r["client_id"] for r in rows])
    batch_id = await _submit(gateway, hook, rows)
    sandbox.app[FAULTS].add(r"/offline_conversions/upload$", 503, times=1, after=True)
    run_service(uploader_main, settings)
    body, _ = await _final(gateway, hook, batch_id)
    assert body["status"] == "completed" and body["processed"] == 5
    assert len(sandbox.app[CONVERSIONS].lines_for(COUNTER)) == 5


async def test_uploader_killed_mid_upload_and_restarted_uploads_nothing_twice(gateway, settings, sandbox):
    hook = await _webhook(gateway)
    rows = [_row(i) for i in range(3)]
    _register(sandbox, [r["client_id"] for r in rows])
    batch_id = await _submit(gateway, hook, rows)
    # Metrika stores the upload, but its answer takes long: the uploader dies before it arrives
    sandbox.app[FAULTS].add(r"/offline_conversions/upload$", None, times=1, delay=30, after=True)
    stop = asyncio.Event()
    first = asyncio.create_task(uploader_main(override(settings, shutdown_grace_s=0.1), stop))
    await wait_for(lambda: _async(len(sandbox.app[CONVERSIONS].lines_for(COUNTER)) == 3), timeout=30)
    stop.set()  # shutdown grace 0.1 s: the in-flight upload is cancelled, its message goes back to the queue
    await asyncio.wait_for(first, timeout=30)

    stop = asyncio.Event()
    second = asyncio.create_task(uploader_main(settings, stop))
    try:
        body, _ = await _final(gateway, hook, batch_id)
    finally:
        stop.set()
        await asyncio.wait_for(second, timeout=30)
    assert body["status"] == "completed" and body["processed"] == 3
    assert len(sandbox.app[CONVERSIONS].lines_for(COUNTER)) == 3


async def test_linkage_failure_and_rejected_token_end_in_error(gateway, settings, sandbox, run_service):
    hook = await _webhook(gateway)
    sandbox.app[FAULTS].fail_linkage(1)
    batch_id = await _submit(gateway, hook, [_row(0)])
    run_service(uploader_main, settings)
    body, seen = await _final(gateway, hook, batch_id)
    assert body["status"] == "error"
    assert "LINKAGE_FAILURE" in next(e for e in body["errors"] if e.get("index") == 0)["reason"]
    assert "uploaded" in seen or "processing" in seen or "pending" in seen

    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "bad", "counter_id": COUNTER, "token": "revoked-token"}
    )
    bad = await resp.json()
    batch_id = await _submit(gateway, bad, [_row(1)])
    body, _ = await _final(gateway, bad, batch_id)
    assert body["status"] == "error"
    assert "Invalid oauth_token" in next(e for e in body["errors"] if e.get("index") == 0)["reason"]
    assert "revoked-token" not in str(body)


async def test_single_and_bulk_from_a_scored_task_complete(gateway, settings, sandbox, run_service):
    day = dt.date.today() - dt.timedelta(days=1)
    resp = await gateway.post(
        "/tasks", json={"date": day.isoformat(), "token": "sandbox-token", "counter": COUNTER}
    )
    task_id = (await resp.json())["task_id"]
    run_service(scorer_main, settings)
    run_service(uploader_main, settings)

    async def scored():
        body = await (await gateway.get(f"/tasks/{task_id}/status")).json()
        return body["status"] == "completed"

    await wait_for(scored, timeout=60)
    resp = await gateway.post("/conversions/bulk", json={"task_id": task_id, "target": "4plus"})
    assert resp.status == 200, await resp.text()
    bulk = await resp.json()
    assert bulk["status"] == "pending"
    level4 = (await (await gateway.get(f"/tasks/{task_id}/result", params={"limit": 1000})).json())["data"]

    resp = await gateway.post(
        "/conversions/single",
        json={**_row(0), "client_id": level4[0]["clientId"], "counter": COUNTER, "token": "sandbox-token"},
    )
    assert resp.status == 200, await resp.text()
    single = await resp.json()

    async def final(upload_id):
        body = await (await gateway.get(f"/conversions/{upload_id}/status")).json()
        return body if body["status"] in UPLOAD_FINAL else None

    bulk_status = await wait_for(lambda: final(bulk["upload_id"]), timeout=60)
    single_status = await wait_for(lambda: final(single["upload_id"]), timeout=60)
    assert bulk_status["status"] == "processed", bulk_status
    assert bulk_status["processed"] == bulk_status["total"] == len(level4)
    assert single_status["status"] == "processed" and single_status["processed"] == 1
    listed = await (await gateway.get(f"/tasks/{task_id}/conversions")).json()
    assert [item["upload_id"] for item in listed] == [bulk["upload_id"]]
    sent = sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))
    assert sent == sorted([v["clientId"] for v in level4] + [level4[0]["clientId"]])


async def test_batches_stored_together_travel_in_one_message_and_all_complete(
    gateway, settings, sandbox, run_service, pool
):
    """The gateway commits concurrent requests' batches together and names them in one message."""
    intake = gateway.server.app[keys.INTAKE]
    token_enc = gateway.server.app[keys.CIPHER].encrypt("sandbox-token")
    rows = [_row(i) for i in range(3)]
    _register(sandbox, [row["client_id"] for row in rows])
    rules = Rules.current(dt.UTC)
    new = []
    for row in rows:
        batch_id = uuid.uuid4()
        conversion = check_row(row, 0, rules)
        assert isinstance(conversion, Conversion), conversion
        records = [conversion.record(batch_id)]
        new.append(batches.NewBatch(batch_id, "single", None, None, COUNTER, token_enc, "pending", records))
    await asyncio.gather(*(intake.store(batch) for batch in new))
    messages = [row["body"] for row in await pool.fetch("SELECT body FROM outbox")]
    assert messages == [{"batch_ids": [str(batch.id) for batch in new]}]

    run_service(uploader_main, settings)

    async def final(upload_id):
        body = await (await gateway.get(f"/conversions/{upload_id}/status")).json()
        return body if body["status"] in UPLOAD_FINAL else None

    results = [await wait_for(lambda b=batch: final(b.id), timeout=60) for batch in new]
    assert [r["status"] for r in results] == ["processed"] * 3
    assert [(r["processed"], r["total"]) for r in results] == [(1, 1)] * 3
    sent = sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))
    assert sent == sorted(row["client_id"] for row in rows)


async def _async(value):
    return value


async def test_rabbitmq_down_at_accept_time_still_ends_completed(
    settings, sandbox, pool, aiohttp_client, run_service
):
    down = override(settings, amqp_url="amqp://guest:guest@127.0.0.1:1/")
    gateway = await aiohttp_client(create_app(down), headers={"Authorization": f"Bearer {API_KEY}"})
    hook = await _webhook(gateway)
    rows = [_row(i) for i in range(3)]
    _register(sandbox, [r["client_id"] for r in rows])
    batch_id = await _submit(gateway, hook, rows)
    assert (await _batch_status(gateway, hook, batch_id))["status"] == "accepted"
    assert not await outbox_drained(pool)

    # the broker is back: a relay that reaches it publishes, and the uploader finishes the job
    relay = OutboxRelay(pool, settings.amqp_url, broker.Topology(settings.queue_prefix), interval_s=0.2)
    stop = asyncio.Event()
    runner = asyncio.create_task(relay.run(stop))
    run_service(uploader_main, settings)
    try:
        body, _ = await _final(gateway, hook, batch_id, timeout=60)
    finally:
        stop.set()
        await runner
        await relay.close()
    assert body["status"] == "completed" and body["processed"] == body["total"] == 3
    assert len(sandbox.app[CONVERSIONS].lines_for(COUNTER)) == 3
