"""Backfills (a parent and a task per day), re-score runs (the latest completed run is served) and bulk
uploads made in SQL (only visits not sent before; the same rows the Python path made)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo

import pandas as pd

from gateway import tasks as gateway_tasks
from scorer import results
from scorer.handler import Deps
from scorer.sweeper import Sweeper
from shared.conversions import Rules
from shared.crypto import TokenCipher
from shared.db import bulk, tasks

MSK = zoneinfo.ZoneInfo("Europe/Moscow")
TODAY = dt.datetime.now(MSK).date()  # counter 777's today (the sandbox puts it in Moscow)
DAY = TODAY - dt.timedelta(days=2)
COUNTER = 777


def body(**fields):
    return {"token": "t", "counter": COUNTER} | fields


async def finish(pool, task_id: uuid.UUID, visits: list[tuple[str, str, dt.datetime]]) -> None:
    """Complete a task with these (visit id, client id, counter-local start) level-4+ visits."""
    assert await tasks.claim(pool, task_id) is not None
    frame = pd.DataFrame(
        {
            "visitId": [v[0] for v in visits],
            "clientId": [v[1] for v in visits],
            "dateTime": [f"{v[2]:%Y-%m-%d %H:%M:%S}" for v in visits],
            "visitDuration": [100] * len(visits),
            "score": [0.9] * len(visits),
            "model_version": ["v1"] * len(visits),
        }
    )
    rows_csv = results.csv_chunks(results.visits_table(task_id, frame), None)
    async with pool.acquire() as conn:
        stored = await tasks.store_result(
            conn, task_id, rows_csv, len(visits), total_visits=len(visits) * 4, model_version="v1"
        )
    assert stored


def visits_of(day: dt.date, ids: list[int]) -> list[tuple[str, str, dt.datetime]]:
    """Visits `ids` of `day` (visit id 10^18 + id, client 2^63 + id, at noon + id minutes)."""
    noon = dt.datetime.combine(day, dt.time(12))
    return [(str(10**18 + i), str(2**63 + i), noon + dt.timedelta(minutes=i)) for i in ids]


async def day_task(pool, settings, day: dt.date = DAY) -> uuid.UUID:
    task_id = uuid.uuid4()
    token_enc = TokenCipher(settings.token_encryption_key).encrypt("task-token")
    await tasks.insert(pool, task_id, day, COUNTER, token_enc)
    return task_id


async def rescore(gateway, task_id) -> dict:
    resp = await gateway.post(f"/tasks/{task_id}/rescore")
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def result_ids(gateway, task_id, **params) -> list[str]:
    resp = await gateway.get(f"/tasks/{task_id}/result", params={"limit": 1000, **params})
    assert resp.status == 200, await resp.text()
    return [row["visitId"] for row in (await resp.json())["data"]]


async def bulk_rows(gateway, pool, task_id, target: str = "4plus") -> list:
    """POST /conversions/bulk, then the rows the uploader makes of it (what it does first)."""
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": target})
    assert resp.status == 200, await resp.text()
    batch_id = uuid.UUID((await resp.json())["upload_id"])
    await bulk.expand(pool, batch_id)
    return list(await pool.fetch("SELECT * FROM conversions WHERE batch_id = $1 ORDER BY idx", batch_id))


# --- backfills ---


async def test_date_ranges_are_checked(gateway, pool):
    yesterday = TODAY - dt.timedelta(days=1)
    cases = {
        "not both": body(date=str(yesterday), date_from=str(yesterday), date_to=str(yesterday)),
        "needs both date_from and date_to": body(date_from=str(yesterday)),
        "date_from must not be after date_to": body(date_from=str(yesterday), date_to=str(DAY)),
        "at most 365 days": body(date_from=str(yesterday - dt.timedelta(days=365)), date_to=str(yesterday)),
        "date_to must be in the past": body(date_from=str(DAY), date_to=str(TODAY)),
        "date_from must be in the past": body(
            date_from=str(TODAY + dt.timedelta(days=1)), date_to=str(TODAY + dt.timedelta(days=2))
        ),
        "is required": body(),
    }
    for expected, sent in cases.items():
        resp = await gateway.post("/tasks", json=sent)
        assert resp.status == 422, (expected, await resp.text())
        detail = (await resp.json())["detail"]
        assert isinstance(detail, list) and expected in detail[0]["msg"], (expected, detail)
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0

    # 365 days is the most: a parent, 365 days, messages for the first BACKFILL_PARALLEL (3) only
    first = yesterday - dt.timedelta(days=364)
    resp = await gateway.post("/tasks", json=body(date_from=str(first), date_to=str(yesterday)))
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    assert len(created["days"]) == 365 and created["days"][0] == {
        "date": str(first),
        "task_id": created["days"][0]["task_id"],
    }
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 366
    bodies = await pool.fetch("SELECT body FROM outbox WHERE routing_key = 'score_tasks' ORDER BY id")
    assert [row["body"]["task_id"] for row in bodies] == [d["task_id"] for d in created["days"][:3]]
    waiting = await pool.fetch("SELECT status, message FROM tasks WHERE NOT released")
    assert len(waiting) == 362 and {(r["status"], r["message"]) for r in waiting} == {("pending", "queued")}


async def test_past_days_are_the_counters_own(gateway, pool, monkeypatch):
    """19:30 UTC on July 1st is 02:30 on July 2nd in Novosibirsk, 22:30 on July 1st in Moscow: July 1st
    is over for a Novosibirsk counter (54xxxxxx in the sandbox), not for a Moscow one."""
    monkeypatch.setattr(gateway_tasks, "_now", lambda: dt.datetime(2026, 7, 1, 19, 30, tzinfo=dt.UTC))
    july1, july2 = dt.date(2026, 7, 1), dt.date(2026, 7, 2)
    novosibirsk = {"token": "sandbox-token", "counter": 54_000_123}  # the sandbox answers its zone

    resp = await gateway.post("/tasks", json=body(date=str(july1)))
    assert resp.status == 422
    (problem,) = (await resp.json())["detail"]
    assert problem["loc"] == ["body", "date"] and problem["type"] == "value_error"
    assert "date must be in the past" in problem["msg"] and "today is 2026-07-01" in problem["msg"]
    resp = await gateway.post("/tasks", json=body(date_from="2026-06-25", date_to=str(july1)))
    assert resp.status == 422 and (await resp.json())["detail"][0]["loc"] == ["body", "date_to"]
    assert await pool.fetchval("SELECT count(*) FROM tasks") == 0

    resp = await gateway.post("/tasks", json=novosibirsk | {"date": str(july1)})
    assert resp.status == 200, await resp.text()
    resp = await gateway.post("/tasks", json=novosibirsk | {"date_from": "2026-06-29", "date_to": str(july1)})
    assert resp.status == 200 and len((await resp.json())["days"]) == 3
    # its own today is not past, nor a later day (both ends named when both are)
    resp = await gateway.post("/tasks", json=novosibirsk | {"date": str(july2)})
    assert resp.status == 422 and "today is 2026-07-02" in (await resp.json())["detail"][0]["msg"]
    resp = await gateway.post("/tasks", json=novosibirsk | {"date_from": str(july2), "date_to": "2026-07-03"})
    detail = (await resp.json())["detail"]
    assert resp.status == 422 and [p["loc"][1] for p in detail] == ["date_from", "date_to"]


async def test_a_parent_is_never_scored_swept_or_retried_as_a_day(gateway, pool):
    resp = await gateway.post(
        "/tasks", json=body(date_from=str(DAY - dt.timedelta(days=2)), date_to=str(DAY))
    )
    created = await resp.json()
    parent = uuid.UUID(created["task_id"])
    days = [uuid.UUID(d["task_id"]) for d in created["days"]]
    assert [d["date"] for d in created["days"]] == [str(DAY - dt.timedelta(days=i)) for i in (2, 1, 0)]
    bodies = await pool.fetch("SELECT body FROM outbox ORDER BY id")
    assert [uuid.UUID(row["body"]["task_id"]) for row in bodies] == days  # one message per day, none for it

    assert await tasks.claim(pool, parent) is None  # a message naming it (a replay) changes nothing
    async with pool.acquire() as conn, conn.transaction():
        due = {row["id"] for row in await tasks.lock_due(conn, 0, 100)}
    assert due == set(days)
    assert not await tasks.reset_failed(pool, parent)
    async with pool.acquire() as conn, conn.transaction():
        assert await tasks.insert_rescore(conn, parent) is None
    resp = await gateway.post(f"/tasks/{parent}/rescore")
    assert resp.status == 409 and "day by day" in (await resp.json())["detail"]


async def test_backfill_status_results_summary_retry_and_listing(gateway, settings, pool):
    first = DAY - dt.timedelta(days=2)
    resp = await gateway.post("/tasks", json=body(date_from=str(first), date_to=str(DAY)))
    created = await resp.json()
    parent = created["task_id"]
    (d1, t1), (d2, t2), (d3, t3) = [(dt.date.fromisoformat(d["date"]), d["task_id"]) for d in created["days"]]

    status = await (await gateway.get(f"/tasks/{parent}/status")).json()
    assert (status["kind"], status["status"], status["progress"]) == ("backfill", "pending", 0)
    assert (status["date"], status["date_to"]) == (str(first), str(DAY))
    assert [d["status"] for d in status["days"]] == ["pending"] * 3
    resp = await gateway.get(f"/tasks/{parent}/result")
    assert resp.status == 409 and "No day of this backfill is completed" in (await resp.json())["detail"]

    await finish(pool, uuid.UUID(t1), visits_of(d1, [1, 2]))
    await tasks.claim(pool, uuid.UUID(t2))
    await tasks.set_progress(pool, uuid.UUID(t2), 50, "evaluate")
    status = await (await gateway.get(f"/tasks/{parent}/status")).json()
    assert (status["status"], status["progress"]) == ("running", 50)  # (100 + 50 + 0) / 3
    assert status["message"] == "1 of 3 days completed, 0 failed"

    await finish(pool, uuid.UUID(t2), visits_of(d2, [3, 4, 5]))
    await tasks.claim(pool, uuid.UUID(t3))
    await tasks.fail(pool, uuid.UUID(t3), "Invalid oauth_token")
    status = await (await gateway.get(f"/tasks/{parent}/status")).json()
    assert (status["status"], status["progress"], status["error"]) == ("failed", 67, "1 of 3 days failed")
    assert status["days"][2] | {"task_id": None} == {
        "date": str(d3),
        "task_id": None,
        "status": "failed",
        "progress": 0,
        "latest_run": 1,
        "served_run": None,
        "level4_visits": None,
        "error": "Invalid oauth_token",
    }
    # the completed days are served, in day order, each visit with its day
    resp = await gateway.get(f"/tasks/{parent}/result", params={"limit": 2, "offset": 1})
    page = await resp.json()
    assert page["pagination"] == {"total": 5, "limit": 2, "offset": 1, "has_more": True}
    assert [(r["visitId"], r["date"]) for r in page["data"]] == [
        (str(10**18 + 2), str(d1)),
        (str(10**18 + 3), str(d2)),
    ]
    assert await result_ids(gateway, parent) == [str(10**18 + i) for i in range(1, 6)]
    assert await result_ids(gateway, parent, date=str(d2)) == await result_ids(gateway, t2)
    assert await result_ids(gateway, parent, client_id=str(2**63 + 4)) == [str(10**18 + 4)]
    resp = await gateway.get(f"/tasks/{parent}/result", params={"date": str(d3)})
    assert resp.status == 409 and "Invalid oauth_token" in (await resp.json())["detail"]
    resp = await gateway.get(f"/tasks/{parent}/result", params={"date": str(TODAY)})
    assert resp.status == 404
    summary = await (await gateway.get(f"/tasks/{parent}/summary")).json()
    assert (summary["level4_visits"], summary["total_visits"], sum(summary["by_hour"])) == (5, 20, 5)
    day_summary = await (await gateway.get(f"/tasks/{parent}/summary", params={"date": str(d1)})).json()
    assert day_summary["level4_visits"] == 2

    listed = await (await gateway.get("/tasks", params={"parent_id": parent})).json()
    assert sorted(item["task_id"] for item in listed["data"]) == sorted([t1, t2, t3])
    assert {item["parent_id"] for item in listed["data"]} == {parent}
    everything = await (await gateway.get("/tasks")).json()
    (item,) = [item for item in everything["data"] if item["kind"] == "backfill"]
    assert (item["task_id"], item["status"], item["date_to"], item["level4_visits"]) == (
        parent,
        "failed",
        str(DAY),
        5,
    )
    failed = await (await gateway.get("/tasks", params={"status": "failed"})).json()
    assert [item["task_id"] for item in failed["data"]] == [t3]

    # a retry of the parent retries its failed day
    resp = await gateway.post(f"/tasks/{parent}/retry")
    assert resp.status == 202
    assert await resp.json() == {"task_id": parent, "status": "pending", "days": [t3]}
    assert (await tasks.get(pool, uuid.UUID(t3)))["status"] == "pending"
    message = await pool.fetchval("SELECT body FROM outbox ORDER BY id DESC LIMIT 1")
    assert message == {"task_id": t3}
    resp = await gateway.post(f"/tasks/{parent}/retry")
    assert resp.status == 409
    await finish(pool, uuid.UUID(t3), visits_of(d3, [6]))
    status = await (await gateway.get(f"/tasks/{parent}/status")).json()
    assert (status["status"], status["progress"], status["error"]) == ("completed", 100, None)

    # one bulk upload of the whole backfill: every day's visits, in day order
    rows = await bulk_rows(gateway, pool, parent)
    assert [r["visit_id"] for r in rows] == [str(10**18 + i) for i in range(1, 7)]
    assert [r["idx"] for r in rows] == list(range(6))


# --- re-score runs ---


async def test_rescore_runs_serve_the_latest_completed_one(gateway, settings, pool):
    first = await day_task(pool, settings)
    await finish(pool, first, visits_of(DAY, [1, 2]))
    again = await rescore(gateway, first)
    run2 = again["task_id"]
    assert again == {"task_id": run2, "run": 2, "rescore_of": str(first), "status": "pending"}
    assert await pool.fetchval("SELECT body FROM outbox ORDER BY id DESC LIMIT 1") == {"task_id": run2}
    resp = await gateway.post(f"/tasks/{first}/rescore")
    assert resp.status == 409 and "Run 2 of this day is pending" in (await resp.json())["detail"]

    # run 2 under way: every task of the day serves run 1
    status = await (await gateway.get(f"/tasks/{run2}/status")).json()
    assert (status["status"], status["run"], status["rescore_of"]) == ("pending", 2, str(first))
    assert (status["latest_run"], status["served_run"]) == (2, 1)
    assert await result_ids(gateway, run2) == [str(10**18 + 1), str(10**18 + 2)]

    await finish(pool, uuid.UUID(run2), visits_of(DAY, [1, 2, 3]))
    for task in (first, run2):
        assert await result_ids(gateway, task) == [str(10**18 + i) for i in (1, 2, 3)]
        assert await result_ids(gateway, task, run=1) == [str(10**18 + i) for i in (1, 2)]
    summary = await (await gateway.get(f"/tasks/{first}/summary")).json()
    assert summary["level4_visits"] == 3
    resp = await gateway.get(f"/tasks/{first}/result", params={"run": 3})
    assert resp.status == 404 and (await resp.json())["detail"] == "Run 3 not found: this day has runs 1 to 2"

    # a failed run 3 (re-scored from run 2: the same family) hides nothing
    run3 = (await rescore(gateway, run2))["task_id"]
    assert (await tasks.get(pool, uuid.UUID(run3)))["rescore_of"] == first
    await tasks.claim(pool, uuid.UUID(run3))
    await tasks.fail(pool, uuid.UUID(run3), "Logs API: quota exceeded")
    assert await result_ids(gateway, run3) == [str(10**18 + i) for i in (1, 2, 3)]
    resp = await gateway.get(f"/tasks/{first}/result", params={"run": 3})
    assert resp.status == 409 and "quota exceeded" in (await resp.json())["detail"]
    status = await (await gateway.get(f"/tasks/{first}/status")).json()
    assert (status["run"], status["latest_run"], status["served_run"]) == (1, 3, 2)
    listed = await (await gateway.get("/tasks")).json()
    assert sorted((i["run"], i["rescore_of"]) for i in listed["data"]) == [
        (1, None),
        (2, str(first)),
        (3, str(first)),
    ]


async def test_a_rescored_day_uploads_only_visits_not_sent_before(gateway, settings, pool):
    first = await day_task(pool, settings)
    await finish(pool, first, visits_of(DAY, [1, 2, 3]))
    rows = await bulk_rows(gateway, pool, first)
    assert [r["visit_id"] for r in rows] == [str(10**18 + i) for i in (1, 2, 3)]
    # another target is another upload: everything again
    assert len(await bulk_rows(gateway, pool, first, target="lead")) == 3

    run2 = uuid.UUID((await rescore(gateway, first))["task_id"])
    await finish(pool, run2, visits_of(DAY, [2, 3, 4, 5]))  # visit 1 dropped, 4 and 5 new
    rows = await bulk_rows(gateway, pool, first)  # any task of the day: the served run
    assert [(r["idx"], r["visit_id"], r["identifier"]) for r in rows] == [
        (0, str(10**18 + 4), str(2**63 + 4)),
        (1, str(10**18 + 5), str(2**63 + 5)),
    ]

    # nothing new: nothing stored, and why
    before = await pool.fetchval("SELECT count(*) FROM batches")
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(run2), "target": "4plus"})
    assert resp.status == 409
    assert (await resp.json())["detail"] == (
        "All 4 level-4+ visits of this day were uploaded before for this target: "
        "there is nothing new to upload"
    )
    assert await pool.fetchval("SELECT count(*) FROM batches") == before

    # a row that failed did not send its visit: the next upload sends it
    await pool.execute("UPDATE conversions SET status = 'error' WHERE visit_id = $1", str(10**18 + 5))
    rows = await bulk_rows(gateway, pool, run2)
    assert [r["visit_id"] for r in rows] == [str(10**18 + 5)]


async def test_bulk_rows_equal_the_python_paths(gateway, settings, pool):
    """The rows made in SQL are the rows gateway/conversions.py made in Python before: the visit times
    read in the counter's zone and stored in UTC, too-old visits kept as failed rows with the same reason."""
    limit = dt.timedelta(days=settings.conversion_max_age_days)
    edge = (dt.datetime.now(MSK) - limit).replace(tzinfo=None, microsecond=0) - dt.timedelta(hours=2)
    visits = [
        (str(2**64 - 1 - i), str(2**63 + i), edge + dt.timedelta(minutes=47 * i)) for i in range(6)
    ]  # the first three too old, the others not
    task_id = await day_task(pool, settings, edge.date())
    await finish(pool, task_id, visits)
    rows = await bulk_rows(gateway, pool, task_id)

    checks = Rules.current(MSK, settings.conversion_max_age_days)  # the Python path, as it was
    expected = []
    for i, (_, client_id, at) in enumerate(visits):
        when = at.replace(tzinfo=MSK).astimezone(dt.UTC)
        if checks.too_old(when):
            reason = f"date_time: {checks.too_old_reason()}"
            expected.append((i, "CLIENT_ID", client_id, None, None, None, "error", reason))
        else:
            expected.append((i, "CLIENT_ID", client_id, "4plus", when, None, "pending", None))
    got = [
        (
            r["idx"],
            r["id_type"],
            r["identifier"],
            r["target"],
            r["date_time"],
            r["price"],
            r["status"],
            r["reason"],
        )
        for r in rows
    ]
    assert got == expected
    assert [r["status"] for r in rows] == ["error"] * 3 + ["pending"] * 3


# --- pacing: BACKFILL_PARALLEL (3 here) days of a backfill queued at a time ---


async def score_messages(pool) -> list[uuid.UUID]:
    """The task ids of the ScoreTask messages written to the outbox, in order."""
    rows = await pool.fetch("SELECT body FROM outbox WHERE routing_key = 'score_tasks' ORDER BY id")
    return [uuid.UUID(row["body"]["task_id"]) for row in rows]


async def backfill(gateway, n_days: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    resp = await gateway.post(
        "/tasks", json=body(date_from=str(DAY - dt.timedelta(days=n_days - 1)), date_to=str(DAY))
    )
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    return uuid.UUID(created["task_id"]), [uuid.UUID(d["task_id"]) for d in created["days"]]


async def test_days_are_queued_in_their_turn(gateway, pool):
    parent, days = await backfill(gateway, 5)
    assert await score_messages(pool) == days[:3]
    # the sweeper never re-queues a day that waits (it has no message to lose), nor does a stray message
    # for it run it
    async with pool.acquire() as conn, conn.transaction():
        assert {row["id"] for row in await tasks.lock_due(conn, 0, 100)} == set(days[:3])
    assert await tasks.claim(pool, days[3]) is None

    # each day that finishes, completed or failed, queues the next one in the same statement
    await finish(pool, days[0], visits_of(DAY, [1]))
    assert await score_messages(pool) == days[:4]
    assert await tasks.claim(pool, days[1]) is not None
    await tasks.fail(pool, days[1], "Logs API error: no")
    assert await score_messages(pool) == days[:5]
    await tasks.fail(pool, days[2], "Logs API error: no")  # nothing is left to queue
    assert await score_messages(pool) == days[:5]

    # a retry of the backfill: its failed days wait for their turn too (days 3 and 4 are queued: 1 place)
    resp = await gateway.post(f"/tasks/{parent}/retry")
    assert resp.status == 202, await resp.text()
    assert sorted((await resp.json())["days"]) == sorted(map(str, days[1:3]))
    assert await score_messages(pool) == [*days[:5], days[1]]
    await finish(pool, days[3], visits_of(DAY, [2]))
    assert await score_messages(pool) == [*days[:5], days[1], days[2]]
    # and so does a backfill's day retried alone
    await tasks.fail(pool, days[4], "Logs API error: no")
    await finish(pool, days[1], visits_of(DAY, [3]))
    resp = await gateway.post(f"/tasks/{days[4]}/retry")
    assert resp.status == 202, await resp.text()
    assert (await score_messages(pool))[-1] == days[4]  # 1 day running: its turn at once
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE NOT released") == 0


async def test_the_sweeper_releases_what_no_finishing_day_did(gateway, pool, settings):
    parent, days = await backfill(gateway, 6)
    # two days end without releasing the next (as if the release had been skipped)
    await pool.execute("UPDATE tasks SET status = 'completed' WHERE id = ANY($1::uuid[])", days[:2])
    assert await tasks.short_backfills(pool, 3, 100) == [parent]
    sweepers = [
        Sweeper(Deps(pool, None, None, None, settings, None), None, None)  # type: ignore[arg-type]
        for _ in range(2)
    ]
    released = await asyncio.gather(*(s.release_backfills() for s in sweepers))
    assert sum(released) == 2 and await score_messages(pool) == days[:5]
    assert await sweepers[0].release_backfills() == 0 and await tasks.short_backfills(pool, 3, 100) == []
