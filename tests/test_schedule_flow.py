"""The job this product exists for, end to end on real parts: a schedule scores the counter's yesterday
and uploads its level-4+ visits (gateway -> scheduler -> RabbitMQ -> scorer -> scheduler -> uploader ->
Metrika sandbox), with nobody calling anything after POST /schedules."""

from __future__ import annotations

import datetime as dt

from sandbox.app import CONVERSIONS
from scheduler.main import main as scheduler_main
from scorer.main import main as scorer_main
from shared import schedule_days
from tests.conftest import override, wait_for
from tests.scheduler.test_scheduler import MOSCOW
from uploader.main import main as uploader_main

COUNTER = 5252
UPLOAD_FINAL = ("processed", "error")


async def test_a_schedule_scores_yesterday_and_uploads_it(gateway, settings, sandbox, run_service):
    body = {"counter": COUNTER, "token": "sandbox-token", "time": "00:00", "upload": {"target": "4plus"}}
    resp = await gateway.post("/schedules", json=body)
    assert resp.status == 201, await resp.text()
    url = f"/schedules/{(await resp.json())['schedule_id']}"
    fast = override(settings, scheduler_interval_s=0.1, logs_poll_initial_s=0.4, http_retry_max_s=0.5)
    for main in (scheduler_main, scorer_main, uploader_main):
        run_service(main, fast)

    async def uploaded():
        runs = (await (await gateway.get(url + "/runs")).json())["data"]
        return runs[0] if runs and runs[0]["status"] in ("uploaded", "failed", "completed") else None

    run = await wait_for(uploaded, timeout=90, what="the run uploaded")
    yesterday = schedule_days.yesterday(dt.datetime.now(dt.UTC), MOSCOW)
    assert (run["date"], run["kind"], run["status"]) == (yesterday.isoformat(), "score", "uploaded"), run

    async def final():
        status = await (await gateway.get(f"/conversions/{run['upload_id']}/status")).json()
        return status if status["status"] in UPLOAD_FINAL else None

    status = await wait_for(final, timeout=60, what="the upload processed")
    result = await gateway.get(f"/tasks/{run['task_id']}/result", params={"limit": 1000})
    level4 = (await result.json())["data"]
    assert status["status"] == "processed" and status["processed"] == status["total"] == len(level4) > 0
    sent = sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))
    assert sent == sorted(v["clientId"] for v in level4)
    schedule = await (await gateway.get(url)).json()
    assert schedule["last_run"]["upload_id"] == run["upload_id"]
    # yesterday is done: the next run is tonight's, at 00:00 Moscow
    tomorrow = schedule_days.local_today(dt.datetime.now(dt.UTC), MOSCOW) + dt.timedelta(days=1)
    assert dt.datetime.fromisoformat(schedule["next_run_at"]) == dt.datetime.combine(
        tomorrow, dt.time(0), tzinfo=MOSCOW
    )
