"""A backfill of 7 days end to end on real parts: gateway -> RabbitMQ -> scorer -> Postgres, on the Logs
API sandbox: the parent completes, each day and the parent serve their results."""

from __future__ import annotations

import datetime as dt

from scorer.main import main as scorer_main
from tests.conftest import wait_for
from tests.test_scoring_flow import COUNTER, calm

LAST = dt.date.today() - dt.timedelta(days=2)
FIRST = LAST - dt.timedelta(days=6)


async def _pages(gateway, path, **params):
    rows, offset = [], 0
    while True:
        resp = await gateway.get(path, params={"limit": 200, "offset": offset, **params})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        rows += body["data"]
        offset += 200
        if not body["pagination"]["has_more"]:
            assert body["pagination"]["total"] == len(rows)
            return rows


async def test_a_backfill_of_7_days_end_to_end(gateway, settings, run_service):
    resp = await gateway.post(
        "/tasks",
        json={"date_from": FIRST.isoformat(), "date_to": LAST.isoformat(), "token": "sandbox-token",
              "counter": COUNTER},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    parent = created["task_id"]
    assert [d["date"] for d in created["days"]] == [str(FIRST + dt.timedelta(days=i)) for i in range(7)]
    run_service(scorer_main, calm(settings))

    progress: list[int] = []

    async def finished():
        body = await (await gateway.get(f"/tasks/{parent}/status")).json()
        progress.append(body["progress"])
        return body if body["status"] in ("completed", "failed") else None

    status = await wait_for(finished, timeout=180, interval=0.2)
    assert status["status"] == "completed", status
    assert status["progress"] == 100 and status["error"] is None and status["kind"] == "backfill"
    assert progress == sorted(progress) and any(0 < p < 100 for p in progress), progress
    assert [d["status"] for d in status["days"]] == ["completed"] * 7
    assert status["total_visits"] == 7 * 400

    # each day's result is its task's; the parent's is every day's, in day order, with the day
    everything = await _pages(gateway, f"/tasks/{parent}/result")
    expected = []
    for day in created["days"]:
        rows = await _pages(gateway, f"/tasks/{day['task_id']}/result")
        assert rows, day
        assert await _pages(gateway, f"/tasks/{parent}/result", date=day["date"]) == [
            row | {"date": day["date"]} for row in rows
        ]
        expected += [row | {"date": day["date"]} for row in rows]
    assert everything == expected
    assert sum(d["level4_visits"] for d in status["days"]) == len(everything)
    assert len({row["visitId"] for row in everything}) == len(everything)

    summary = await (await gateway.get(f"/tasks/{parent}/summary")).json()
    assert summary["level4_visits"] == len(everything) and summary["total_visits"] == 7 * 400
