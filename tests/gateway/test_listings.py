"""Listings under the API key: GET /tasks, /tasks/{id}/summary, /tasks/{id}/result?client_id=,
/webhook/offline-conversions/{id}/batches (and one batch), /conversions; on real Postgres."""

from __future__ import annotations

import datetime as dt
import uuid

import pandas as pd

from scorer import results
from shared.db import bulk as shared_bulk
from shared.db import tasks
from tests.conftest import completed_task

BASE = "/webhook/offline-conversions"
NO_KEY = {"Authorization": ""}
PAGE_KEYS = {"data", "pagination"}


def recent(hours: float = 1) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).replace(microsecond=0).isoformat()


def row(client_id: str = "1750856904", **fields) -> dict:
    return {"client_id": client_id, "target": "purchase", "date_time": recent()} | fields


async def create_webhook(gateway, name: str = "CRM") -> dict:
    resp = await gateway.post(BASE, json={"name": name, "counter_id": 123456, "token": "y0_token"})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def submit(gateway, hook: dict, conversions: list[dict]) -> str:
    resp = await gateway.post(
        f"{BASE}/{hook['webhook_id']}",
        json={"conversions": conversions},
        headers={"X-Webhook-Secret": hook["secret"], **NO_KEY},
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["batch_id"]


async def get_json(gateway, path: str, expect: int = 200, **params) -> dict:
    resp = await gateway.get(path, params=params)
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def test_tasks_are_listed_newest_first_with_filters_and_pages(gateway, pool):
    day = dt.date.today() - dt.timedelta(days=3)
    done = await completed_task(pool, 3, start=dt.datetime.combine(day, dt.time(10)), counter=111)
    other = uuid.uuid4()
    await tasks.insert(pool, other, day - dt.timedelta(days=1), 222, b"x")
    newest = uuid.uuid4()
    await tasks.insert(pool, newest, day - dt.timedelta(days=2), 111, b"x")
    await tasks.claim(pool, newest)

    body = await get_json(gateway, "/tasks")
    assert [t["task_id"] for t in body["data"]] == [str(newest), str(other), str(done)]
    assert body["pagination"] == {"total": 3, "limit": 100, "offset": 0, "has_more": False}
    first = body["data"][2]
    assert set(first) == {
        "task_id", "counter", "date", "status", "progress", "message", "created_at", "started_at",
        "finished_at", "total_visits", "level4_visits", "error", "kind", "date_to", "parent_id", "run",
        "rescore_of",
    }  # fmt: skip
    assert (first["status"], first["counter"], first["date"]) == ("completed", 111, day.isoformat())
    assert (first["total_visits"], first["level4_visits"], first["progress"]) == (12, 3, 100)
    assert first["created_at"].endswith("+00:00") and dt.datetime.fromisoformat(first["finished_at"])

    def ids(answer: dict) -> list[str]:
        return [t["task_id"] for t in answer["data"]]

    assert ids(await get_json(gateway, "/tasks", status="completed")) == [str(done)]
    assert ids(await get_json(gateway, "/tasks", status="running")) == [str(newest)]
    assert ids(await get_json(gateway, "/tasks", counter=111)) == [str(newest), str(done)]
    assert ids(await get_json(gateway, "/tasks", date=day.isoformat())) == [str(done)]
    window = {"date_from": (day - dt.timedelta(days=1)).isoformat(), "date_to": day.isoformat()}
    assert ids(await get_json(gateway, "/tasks", **window)) == [str(other), str(done)]
    assert ids(await get_json(gateway, "/tasks", counter=111, status="pending")) == []

    page = await get_json(gateway, "/tasks", limit=2, offset=1)
    assert ids(page) == [str(other), str(done)]
    assert page["pagination"] == {"total": 3, "limit": 2, "offset": 1, "has_more": False}
    assert (await get_json(gateway, "/tasks", limit=1))["pagination"]["has_more"] is True


async def test_bad_listing_filters_are_422_in_the_seed_shape(gateway):
    for path, params in (
        ("/tasks", {"status": "done"}),
        ("/tasks", {"counter": "abc"}),
        ("/tasks", {"date": "2025-13-01"}),
        ("/tasks", {"limit": "0"}),
        ("/conversions", {"task_id": "nope"}),
        ("/conversions", {"status": "weird"}),
        ("/search", {}),
        ("/search", {"client_id": "  "}),
        ("/search", {"client_id": "x" * 300}),
    ):
        body = await get_json(gateway, path, 422, **params)
        assert isinstance(body["detail"], list) and body["detail"][0]["loc"][0] == "query", (path, body)
    hook = await create_webhook(gateway)
    for params in ({"status": "done"}, {"since": "yesterday"}, {"until": "2025-01-01T25:00"}):
        body = await get_json(gateway, f"{BASE}/{hook['webhook_id']}/batches", 422, **params)
        assert body["detail"][0]["loc"][0] == "query"


async def test_listings_need_the_api_key(gateway):
    for path in ("/tasks", "/conversions", "/search?client_id=1", f"{BASE}/{uuid.uuid4()}/batches"):
        resp = await gateway.get(path, headers=NO_KEY)
        assert resp.status == 401, path


async def test_the_summary_counts_by_hour_score_and_device(gateway, pool):
    start = dt.datetime.combine(dt.date.today() - dt.timedelta(days=2), dt.time(9, 59, 58))
    task_id = uuid.uuid4()
    await tasks.insert(pool, task_id, start.date(), 1, b"x")
    await tasks.claim(pool, task_id)
    frame = pd.DataFrame(
        {
            "visitId": [str(2**64 - 1 - i) for i in range(5)],
            "clientId": ["1", "2", "3", "4", "5"],
            "dateTime": [f"{start + dt.timedelta(seconds=i):%Y-%m-%d %H:%M:%S}" for i in range(5)],
            "visitDuration": [100] * 5,
            "score": [0.05, 0.55, 0.55, 0.95, 1.0],
            "model_version": ["v1"] * 5,
            "deviceClass": ["desktop", "mobile", "mobile", "desktop", "desktop"],
        }
    )
    rows_csv = results.csv_chunks(results.visits_table(task_id, frame), None)
    async with pool.acquire() as conn:
        assert await tasks.store_result(conn, task_id, rows_csv, 5, total_visits=50, model_version="v1")

    body = await get_json(gateway, f"/tasks/{task_id}/summary")
    assert body["task_id"] == str(task_id)
    assert (body["total_visits"], body["level4_visits"]) == (50, 5)
    assert len(body["by_hour"]) == 24 and body["by_hour"][9] == 2 and body["by_hour"][10] == 3
    assert body["score_histogram"]["edges"] == [i / 10 for i in range(11)]
    assert body["score_histogram"]["counts"] == [1, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert body["by_device"] == {"desktop": 3, "mobile": 2, "unknown": 0}

    # rows stored before the device class was kept count as unknown
    old = await completed_task(pool, 4, start=start)
    assert (await get_json(gateway, f"/tasks/{old}/summary"))["by_device"] == {
        "desktop": 0,
        "mobile": 0,
        "unknown": 4,
    }
    pending = uuid.uuid4()
    await tasks.insert(pool, pending, start.date(), 1, b"x")
    assert (await get_json(gateway, f"/tasks/{pending}/summary", 409))["detail"] == "Task not finished"
    await get_json(gateway, f"/tasks/{uuid.uuid4()}/summary", 404)


async def test_a_result_is_filtered_by_client_id_exactly(gateway, pool):
    start = dt.datetime.combine(dt.date.today() - dt.timedelta(days=2), dt.time(12))
    task_id = await completed_task(pool, 5, start=start)
    wanted = str(2**63 + 3)
    body = await get_json(gateway, f"/tasks/{task_id}/result", client_id=wanted)
    assert [v["clientId"] for v in body["data"]] == [wanted]
    assert body["pagination"]["total"] == 1
    assert (await get_json(gateway, f"/tasks/{task_id}/result", client_id=wanted[:-1]))["data"] == []
    assert (await get_json(gateway, f"/tasks/{task_id}/result"))["pagination"]["total"] == 5


async def test_a_webhook_lists_only_its_own_batches(gateway):
    first, second = await create_webhook(gateway, "one"), await create_webhook(gateway, "two")
    mine = [await submit(gateway, first, [row(), row("42")]) for _ in range(3)]
    theirs = await submit(gateway, second, [row()])

    body = await get_json(gateway, f"{BASE}/{first['webhook_id']}/batches")
    assert [b["batch_id"] for b in body["data"]] == mine[::-1]
    assert body["pagination"] == {"total": 3, "limit": 100, "offset": 0, "has_more": False}
    item = body["data"][0]
    assert set(item) == {
        "batch_id",
        "webhook_id",
        "status",
        "total",
        "processed",
        "received_at",
        "finished_at",
    }
    assert (item["webhook_id"], item["status"], item["total"], item["processed"]) == (
        first["webhook_id"],
        "accepted",
        2,
        0,
    )
    assert item["finished_at"] is None and item["received_at"].endswith("+00:00")
    other = await get_json(gateway, f"{BASE}/{second['webhook_id']}/batches")
    assert [b["batch_id"] for b in other["data"]] == [theirs]

    page = await get_json(gateway, f"{BASE}/{first['webhook_id']}/batches", limit=1, offset=1)
    assert [b["batch_id"] for b in page["data"]] == [mine[1]] and page["pagination"]["has_more"]
    assert (await get_json(gateway, f"{BASE}/{first['webhook_id']}/batches", status="error"))["data"] == []
    accepted = await get_json(gateway, f"{BASE}/{first['webhook_id']}/batches", status="accepted")
    assert accepted["pagination"]["total"] == 3

    # the time window: received at or after `since`, before `until`; a time without offset is UTC
    received = dt.datetime.fromisoformat(body["data"][1]["received_at"])  # the middle one
    since = await get_json(gateway, f"{BASE}/{first['webhook_id']}/batches", since=received.isoformat())
    assert [b["batch_id"] for b in since["data"]] == [mine[2], mine[1]]
    naive = received.replace(tzinfo=None).isoformat()
    until = await get_json(gateway, f"{BASE}/{first['webhook_id']}/batches", until=naive)
    assert [b["batch_id"] for b in until["data"]] == [mine[0]]
    # "+00:00" sent without percent-encoding arrives as " 00:00": still read as the offset
    raw = await gateway.get(f"{BASE}/{first['webhook_id']}/batches?since={received.isoformat()}")
    assert (await raw.json())["pagination"]["total"] == 2

    await get_json(gateway, f"{BASE}/{uuid.uuid4()}/batches", 404)
    await get_json(gateway, f"{BASE}/not-a-uuid/batches", 404)


async def test_one_batch_with_its_row_errors_under_the_api_key(gateway):
    hook, other = await create_webhook(gateway), await create_webhook(gateway)
    resp = await gateway.post(
        f"{BASE}/{hook['webhook_id']}?partial=true",
        json={"conversions": [row(), row(target="")]},
        headers={"X-Webhook-Secret": hook["secret"], **NO_KEY},
    )
    batch_id = (await resp.json())["batch_id"]
    body = await get_json(gateway, f"{BASE}/{hook['webhook_id']}/batches/{batch_id}")
    assert (body["batch_id"], body["webhook_id"], body["total"]) == (batch_id, hook["webhook_id"], 2)
    assert [e["index"] for e in body["errors"]] == [1]
    await get_json(gateway, f"{BASE}/{other['webhook_id']}/batches/{batch_id}", 404)
    await get_json(gateway, f"{BASE}/{hook['webhook_id']}/batches/{uuid.uuid4()}", 404)
    await get_json(gateway, f"{BASE}/{hook['webhook_id']}/batches/nope", 404)


async def test_uploads_are_listed_by_task_and_status(gateway, pool):
    start = dt.datetime.now() - dt.timedelta(hours=3)
    task_id = await completed_task(pool, 2, start=start)
    resp = await gateway.post(
        "/conversions/bulk", json={"task_id": str(task_id), "target": "visit4", "token": "t"}
    )
    assert resp.status == 200, await resp.text()
    bulk = (await resp.json())["upload_id"]
    assert await shared_bulk.expand(pool, uuid.UUID(bulk)) == 2  # what the uploader does first
    resp = await gateway.post(
        "/conversions/single", json=row(token="t", counter=777, target="call") | {"purchase_id": "p-1"}
    )
    single = (await resp.json())["upload_id"]
    await submit(gateway, await create_webhook(gateway), [row()])  # a webhook batch is no upload

    body = await get_json(gateway, "/conversions")
    assert [u["upload_id"] for u in body["data"]] == [single, bulk]
    item = body["data"][1]
    assert set(item) >= {
        "upload_id",
        "task_id",
        "counter",
        "target",
        "status",
        "total",
        "created_at",
        "finished_at",
    }
    assert (item["task_id"], item["target"], item["status"], item["total"]) == (
        str(task_id),
        "visit4",
        "pending",
        2,
    )
    assert (body["data"][0]["task_id"], body["data"][0]["counter"]) == (None, 777)

    by_task = await get_json(gateway, "/conversions", task_id=str(task_id))
    assert [u["upload_id"] for u in by_task["data"]] == [bulk]
    assert (await get_json(gateway, "/conversions", task_id=str(uuid.uuid4())))["data"] == []
    assert (await get_json(gateway, "/conversions", status="pending"))["pagination"]["total"] == 2

    # a processed upload (Metrika's final state) is listed, and found, as "processed"
    await pool.execute("UPDATE batches SET status = 'completed' WHERE id = $1", uuid.UUID(bulk))
    processed = await get_json(gateway, "/conversions", status="processed")
    assert [(u["upload_id"], u["status"]) for u in processed["data"]] == [(bulk, "processed")]
    assert processed["data"][0]["finished_at"] is not None
    assert (await get_json(gateway, "/conversions", status="completed"))["pagination"]["total"] == 1
    page = await get_json(gateway, "/conversions", limit=1)
    assert page["pagination"] == {"total": 2, "limit": 1, "offset": 0, "has_more": True}
