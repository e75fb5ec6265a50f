"""The /schedules endpoints: shapes, conflicts, changes; the runs the scheduler makes, as the API shows
them."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from shared import schedule_days
from shared.crypto import TokenCipher
from shared.db import batches, tasks
from tests.scheduler.test_scheduler import MOSCOW, runs, scheduler

COUNTER = 4242
TOKEN = "sandbox-token"  # the sandbox's Management API answers it


async def create(gateway, **body):
    resp = await gateway.post("/schedules", json={"counter": COUNTER, "token": TOKEN, **body})
    return resp.status, await resp.json()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def test_create_shows_the_schedule_without_its_token(gateway):
    status, body = await create(gateway, upload={"target": "level4"})
    assert status == 201, body
    assert TOKEN not in str(body)
    assert set(body) == {
        "schedule_id", "counter", "time", "timezone", "upload", "paused", "callback_url", "created_at",
        "updated_at", "next_run_at", "last_run",
    }  # fmt: skip
    assert body["counter"] == COUNTER and body["time"] == "03:00" and body["timezone"] == "Europe/Moscow"
    assert body["upload"] == {"target": "level4"} and body["paused"] is False and body["last_run"] is None
    # nothing scored yet: the counter-local yesterday is due at 03:00 today (Moscow)
    now = dt.datetime.now(dt.UTC)
    today = schedule_days.local_today(now, MOSCOW)
    assert at(body["next_run_at"]) == dt.datetime.combine(today, dt.time(3), tzinfo=MOSCOW)
    resp = await gateway.get(f"/schedules/{body['schedule_id']}")
    assert resp.status == 200
    assert await resp.json() == {**body, "runs": []}


async def test_one_schedule_per_counter(gateway):
    _, first = await create(gateway)
    status, body = await create(gateway, time="05:00")
    assert status == 409
    assert body["schedule_id"] == first["schedule_id"] and first["schedule_id"] in body["detail"]


async def test_a_bad_body_is_refused(gateway):
    for bad in ({"time": "24:00"}, {"time": "3:00"}, {"upload": {"target": ""}}, {"token": ""}, {"x": 1}):
        status, body = await create(gateway, **bad)
        assert status == 422, (bad, body)
    resp = await gateway.post("/schedules", json={"token": TOKEN})
    assert resp.status == 422


async def test_change_time_token_upload_and_pause(gateway, settings, pool):
    _, body = await create(gateway)
    url = f"/schedules/{body['schedule_id']}"
    resp = await gateway.patch(
        url, json={"time": "05:30", "upload": {"target": "lead"}, "token": "new-token"}
    )
    changed = await resp.json()
    assert resp.status == 200, changed
    assert changed["time"] == "05:30" and changed["upload"] == {"target": "lead"}
    assert at(changed["next_run_at"]) - at(body["next_run_at"]) == dt.timedelta(hours=2, minutes=30)
    assert "new-token" not in str(changed)
    token_enc = await pool.fetchval(
        "SELECT token_enc FROM schedules WHERE id = $1", uuid.UUID(body["schedule_id"])
    )
    assert TokenCipher(settings.token_encryption_key).decrypt(token_enc) == "new-token"
    resp = await gateway.patch(url, json={"upload": None})
    assert (await resp.json())["upload"] is None
    resp = await gateway.post(url + "/pause")
    paused = await resp.json()
    assert resp.status == 200 and paused["paused"] is True and paused["next_run_at"] is None
    resp = await gateway.post(url + "/resume")
    resumed = await resp.json()
    assert resumed["paused"] is False and resumed["next_run_at"] is not None
    resp = await gateway.patch(url, json={"paused": True})
    assert (await resp.json())["paused"] is True
    for bad in ({}, {"time": None}, {"paused": "yes"}, {"counter": 5}):
        resp = await gateway.patch(url, json=bad)
        assert resp.status == 422, bad


async def test_list_and_delete(gateway):
    ids = []
    for counter in (1, 2, 3):
        status, body = await create(gateway, counter=counter)
        ids.append(body["schedule_id"])
    resp = await gateway.get("/schedules", params={"limit": 2})
    page = await resp.json()
    assert [s["schedule_id"] for s in page["data"]] == ids[::-1][:2]
    assert page["pagination"] == {"total": 3, "limit": 2, "offset": 0, "has_more": True}
    resp = await gateway.delete(f"/schedules/{ids[0]}")
    assert resp.status == 204
    for method, path in (
        ("GET", f"/schedules/{ids[0]}"),
        ("DELETE", f"/schedules/{ids[0]}"),
        ("PATCH", f"/schedules/{ids[0]}"),
        ("POST", f"/schedules/{ids[0]}/pause"),
        ("GET", f"/schedules/{ids[0]}/runs"),
        ("GET", "/schedules/not-a-uuid"),
    ):
        resp = await gateway.request(method, path, json={"paused": True} if method == "PATCH" else None)
        assert resp.status == 404, (method, path)
        assert await resp.json() == {"detail": "Schedule not found"}
    assert (await (await gateway.get("/schedules")).json())["pagination"]["total"] == 2


async def test_runs_as_the_api_shows_them(gateway, settings, pool):
    _, body = await create(gateway, time="00:00", upload={"target": "level4"})
    url = f"/schedules/{body['schedule_id']}"
    replica = scheduler(pool, settings)
    now = dt.datetime.now(dt.UTC)
    await replica.tick(now)
    (run,) = await runs(pool, COUNTER)
    await tasks.fail(pool, run["task_id"], "Invalid oauth_token")
    await replica.tick(now)
    expected = {
        "date": schedule_days.yesterday(now, MOSCOW).isoformat(),
        "kind": "score",
        "task_id": str(run["task_id"]),
        "status": "failed",
        "upload_id": None,
        "upload_status": None,
        "note": "Invalid oauth_token",
    }
    resp = await gateway.get(url + "/runs")
    page = await resp.json()
    assert resp.status == 200 and page["pagination"]["total"] == 1
    (shown,) = page["data"]
    assert shown.pop("created_at") and shown == expected
    detail = await (await gateway.get(url)).json()
    assert [{k: v for k, v in r.items() if k != "created_at"} for r in detail["runs"]] == [expected]
    assert {k: v for k, v in detail["last_run"].items() if k != "created_at"} == expected
    # yesterday has its run: the next one is tomorrow's, at 00:00 Moscow
    tomorrow = schedule_days.local_today(now, MOSCOW) + dt.timedelta(days=1)
    assert at(detail["next_run_at"]) == dt.datetime.combine(tomorrow, dt.time(0), tzinfo=MOSCOW)
    # a run with an upload shows that upload's own status, as GET /conversions/{id}/status words it
    upload_id = uuid.uuid4()
    await batches.insert_batch(pool, upload_id, "bulk", COUNTER, b"x", "pending", task_id=run["task_id"])
    await pool.execute("UPDATE schedule_runs SET status = 'uploaded', upload_id = $1", upload_id)
    for status, shown_as in (("pending", "pending"), ("completed", "processed"), ("error", "error")):
        await pool.execute("UPDATE batches SET status = $2 WHERE id = $1", upload_id, status)
        (shown,) = (await (await gateway.get(url + "/runs")).json())["data"]
        last = (await (await gateway.get(url)).json())["last_run"]
        assert shown["upload_id"] == str(upload_id) and shown["upload_status"] == shown_as
        assert last["upload_status"] == shown_as


async def test_a_counter_in_another_zone_runs_on_its_own_clock(gateway):
    # the sandbox's counters 54xxxxxx are in Asia/Novosibirsk (its Management API says so)
    status, body = await create(gateway, counter=54_000_123)
    assert status == 201 and body["timezone"] == "Asia/Novosibirsk"
    novosibirsk = ZoneInfo("Asia/Novosibirsk")
    today = schedule_days.local_today(dt.datetime.now(dt.UTC), novosibirsk)
    assert at(body["next_run_at"]) == dt.datetime.combine(today, dt.time(3), tzinfo=novosibirsk)
    listed = await (await gateway.get("/schedules")).json()
    assert listed["data"][0]["timezone"] == "Asia/Novosibirsk"
