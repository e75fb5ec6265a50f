"""The uploader under Metrika's faults: durable retries, the horizon, retry by hand, slow processing,
one counter's hung status query, and the sweeper; on real Postgres, RabbitMQ and the sandbox."""

from __future__ import annotations

import asyncio
import datetime as dt

import aio_pika

from sandbox.app import CONVERSIONS, FAULTS, VISITORS
from shared import broker
from tests.conftest import AMQP_URL, override, wait_for
from uploader.main import main as uploader_main

COUNTER = 7373
OTHER_COUNTER = 7374
HOUR_AGO = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
FINAL = ("processed", "error")  # an upload's final states (a webhook batch ends "completed")
BATCH_FINAL = ("completed", "error")


async def _single(gateway, client_id: str, *, counter: int = COUNTER, target: str = "purchase") -> str:
    body = {"client_id": client_id, "target": target, "date_time": HOUR_AGO, "counter": counter}
    resp = await gateway.post("/conversions/single", json={**body, "token": "sandbox-token"})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["upload_id"])


async def _status(gateway, upload_id: str) -> dict:
    resp = await gateway.get(f"/conversions/{upload_id}/status")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _final(gateway, upload_id: str, timeout: float = 60) -> dict:
    async def done():
        body = await _status(gateway, upload_id)
        return body if body["status"] in FINAL else None

    return await wait_for(done, timeout=timeout, interval=0.05)


def _sent(sandbox, counter: int = COUNTER) -> list[str]:
    return sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(counter))


async def test_an_outage_leaves_the_upload_pending_with_its_next_attempt_until_metrika_is_back(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["501"])
    sandbox.app[FAULTS].add(r"/offline_conversions/upload$", 503, times=None)
    run_service(uploader_main, override(settings, http_retry_attempts=1))
    upload_id = await _single(gateway, "501")

    async def retried_twice():
        body = await _status(gateway, upload_id)
        return body if body["attempts"] >= 2 else None

    waiting = await wait_for(retried_twice)
    assert waiting["status"] == "pending" and waiting["errors"] is None
    assert waiting["next_attempt_at"] is not None and "503" in waiting["last_error"]
    assert dt.datetime.fromisoformat(waiting["next_attempt_at"]) > dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=5
    )

    sandbox.app[FAULTS].clear()
    body = await _final(gateway, upload_id)
    assert body["status"] == "processed" and body["processed"] == 1
    assert body["next_attempt_at"] is None and body["last_error"] is None
    assert _sent(sandbox) == ["501"]


async def test_a_lost_answer_while_the_uploadings_list_fails_is_adopted_never_sent_twice(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["601"])
    faults = sandbox.app[FAULTS]
    faults.add(r"/offline_conversions/upload$", 503, times=1, after=True)  # stored, answer lost
    faults.add(r"/offline_conversions/uploadings$", 503, times=6)  # and the list to look it up fails
    run_service(uploader_main, override(settings, http_retry_attempts=1))
    upload_id = await _single(gateway, "601")
    body = await _final(gateway, upload_id)
    assert body["status"] == "processed" and body["processed"] == 1
    assert _sent(sandbox) == ["601"]


async def test_past_the_horizon_the_rows_end_in_error_and_a_retry_sends_them_once(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["701"])
    faults = sandbox.app[FAULTS]
    # Metrika stores the file but every answer is lost, and its list of uploads cannot be read either
    faults.add(r"/offline_conversions/upload$", 503, times=None, after=True)
    faults.add(r"/offline_conversions/uploadings$", 503, times=None)
    run_service(uploader_main, override(settings, http_retry_attempts=1, retry_horizon_s=1.0))
    upload_id = await _single(gateway, "701")
    body = await _final(gateway, upload_id)
    assert body["status"] == "error" and body["processed"] == 0
    reason = next(e for e in body["errors"] if e["index"] == 0)["reason"]
    assert "kept failing for" in reason and "could not be checked" in reason

    faults.clear()
    resp = await gateway.post(f"/conversions/{upload_id}/retry")
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"upload_id": upload_id, "status": "pending", "retried": 1}
    body = await _final(gateway, upload_id)
    assert body["status"] == "processed" and body["processed"] == 1
    # the retry found the upload Metrika had kept: the row reached Metrika exactly once
    assert _sent(sandbox) == ["701"]

    resp = await gateway.post(f"/conversions/{upload_id}/retry")
    assert resp.status == 409 and "Nothing to retry" in (await resp.json())["detail"]


async def test_a_goal_created_later_lets_a_retry_send_the_rows_it_held_back(
    gateway, settings, sandbox, run_service, http
):
    sandbox.app[VISITORS].register(COUNTER, ["801"])
    run_service(uploader_main, settings)
    upload_id = await _single(gateway, "801", target="paid")
    body = await _final(gateway, upload_id)
    row_error = next(e for e in body["errors"] if e["index"] == 0)
    assert body["status"] == "error" and "goal 'paid' not found" in row_error["reason"]
    assert _sent(sandbox) == []

    goal = {"goal": {"name": "Paid", "type": "action", "conditions": [{"type": "exact", "url": "paid"}]}}
    url = f"{settings.metrika_api_url}/management/v1/counter/{COUNTER}/goals"
    async with http.post(url, json=goal, headers={"Authorization": "OAuth sandbox-token"}) as resp:
        assert resp.status == 200
    resp = await gateway.post(f"/conversions/{upload_id}/retry")
    assert resp.status == 202
    body = await _final(gateway, upload_id)
    assert body["status"] == "processed" and body["processed"] == 1 and body["errors"] is None
    assert _sent(sandbox) == ["801"]


async def test_a_file_metrika_finishes_late_is_reported_then_corrected(
    gateway, settings, start_sandbox, run_service
):
    slow = await start_sandbox(conversion_processing_seconds=4)
    slow.app[VISITORS].register(COUNTER, ["901"])
    url = str(slow.make_url("")).rstrip("/")
    timeouts = {"upload_processing_timeout_s": 0.5, "upload_slow_poll_s": 0.5}
    run_service(uploader_main, override(settings, metrika_api_url=url, **timeouts))
    upload_id = await _single(gateway, "901")
    body = await _final(gateway, upload_id)
    assert body["status"] == "error" and body["processed"] == 0
    row_error = next(e for e in body["errors"] if e["index"] == 0)
    assert "did not finish processing within" in row_error["reason"]

    async def corrected():
        body = await _status(gateway, upload_id)
        return body if body["status"] == "processed" else None

    body = await wait_for(corrected, timeout=30)
    assert body["processed"] == 1 and body["errors"] is None
    assert _sent(slow) == ["901"]


async def test_one_counter_s_hung_status_query_does_not_hold_up_another_counter(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["1001"])
    sandbox.app[VISITORS].register(OTHER_COUNTER, ["1002"])
    # every status query of COUNTER hangs for longer than the test
    sandbox.app[FAULTS].add(rf"/counter/{COUNTER}/offline_conversions/uploading/", None, times=None, delay=60)
    run_service(uploader_main, override(settings, metrika_timeout_s=30, shutdown_grace_s=0.5))
    stuck = await _single(gateway, "1001")
    await wait_for(lambda: _is(gateway, stuck, "uploaded"))
    fine = await _single(gateway, "1002", counter=OTHER_COUNTER)
    body = await _final(gateway, fine)
    assert body["status"] == "processed"
    assert (await _status(gateway, stuck))["status"] == "uploaded"  # still waiting for its hung answer


async def _is(gateway, upload_id: str, status: str) -> bool:
    return (await _status(gateway, upload_id))["status"] == status


async def test_the_sweeper_requeues_a_batch_whose_message_was_lost(gateway, settings, sandbox, run_service):
    sandbox.app[VISITORS].register(COUNTER, ["1101"])
    upload_id = await _single(gateway, "1101")
    # the message is lost (purged) before any uploader saw it
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(
            broker.Topology(settings.queue_prefix).queue(broker.CONVERSION_UPLOADS)
        )
        await wait_for(lambda: _has_message(queue))
        await queue.purge()
    finally:
        await connection.close()
    run_service(uploader_main, override(settings, stale_after_s=0.5))
    body = await _final(gateway, upload_id)
    assert body["status"] == "processed" and _sent(sandbox) == ["1101"]


async def _has_message(queue) -> bool:
    declared = await queue.declare()
    return bool(declared.message_count)


async def test_an_uploader_stops_within_its_grace_while_a_status_query_hangs(gateway, settings, sandbox):
    sandbox.app[FAULTS].add(r"/offline_conversions/uploading/", None, times=None, delay=60)
    stop = asyncio.Event()
    task = asyncio.create_task(uploader_main(override(settings, shutdown_grace_s=0.5), stop))
    upload_id = await _single(gateway, "1201")
    await wait_for(lambda: _is(gateway, upload_id, "uploaded"))
    await asyncio.sleep(0.5)  # let the poller send its (hanging) query
    stop.set()
    await asyncio.wait_for(task, timeout=15)  # returns: nothing waits for the hung answer


async def test_a_webhook_batch_is_retried_by_hand_under_its_own_webhook_only(
    gateway, settings, sandbox, run_service, http
):
    sandbox.app[VISITORS].register(COUNTER, ["1301"])
    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token"}
    )
    hook = await resp.json()
    row = {"client_id": "1301", "target": "signup", "date_time": HOUR_AGO}
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}",
        json={"conversions": [row]},
        headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
    )
    batch_id = (await resp.json())["batch_id"]
    run_service(uploader_main, settings)

    async def final():
        resp = await gateway.get(
            f"/webhook/offline-conversions/{hook['webhook_id']}/status",
            params={"batch_id": batch_id},
            headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
        )
        body = await resp.json()
        return body if body["status"] in BATCH_FINAL else None

    assert (await wait_for(final))["status"] == "error"
    goal = {"goal": {"name": "Signup", "type": "action", "conditions": [{"type": "exact", "url": "signup"}]}}
    url = f"{settings.metrika_api_url}/management/v1/counter/{COUNTER}/goals"
    async with http.post(url, json=goal, headers={"Authorization": "OAuth sandbox-token"}) as resp:
        assert resp.status == 200

    other = "00000000-0000-0000-0000-000000000001"
    resp = await gateway.post(f"/webhook/offline-conversions/{other}/batches/{batch_id}/retry")
    assert resp.status == 404
    resp = await gateway.post(f"/webhook/offline-conversions/{hook['webhook_id']}/batches/{batch_id}/retry")
    assert resp.status == 202
    assert await resp.json() == {"batch_id": batch_id, "status": "pending", "retried": 1}
    body = await wait_for(final)
    assert body["status"] == "completed" and body["processed"] == 1
    assert _sent(sandbox) == ["1301"]
