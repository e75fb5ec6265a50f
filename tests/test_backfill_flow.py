"""A backfill of 7 days end to end on real parts: gateway -> RabbitMQ -> scorer -> Postgres, on the Logs
API sandbox: the parent completes, each day and the parent serve their results; BACKFILL_PARALLEL (2 here)
days at most are queued or running at any moment."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import aio_pika
import pytest

from scorer.main import main as scorer_main
from shared import broker
from tests.conftest import AMQP_URL, override, wait_for
from tests.test_scoring_flow import COUNTER, calm

PARALLEL = 2

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


@pytest.fixture
def settings(settings):
    """The gateway and the scorer queue BACKFILL_PARALLEL days of a backfill at a time."""
    return override(settings, backfill_parallel=PARALLEL)


class Watch:
    """Samples, every few ms until stopped, the backfill's days queued or running (released, unfinished) in
    Postgres and the messages waiting in the score_tasks queue."""

    def __init__(self, pool, queue_name: str, parent: str) -> None:
        self.pool, self.queue_name, self.parent = pool, queue_name, parent
        self.open_days: list[int] = []
        self.queued: list[int] = []
        self.released: list[int] = []

    async def run(self, stop: asyncio.Event) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            while not stop.is_set():
                row = await self.pool.fetchrow(
                    "SELECT count(*) FILTER (WHERE released AND status IN ('pending', 'running')) AS open,"
                    " count(*) FILTER (WHERE released) AS released FROM tasks WHERE parent_id = $1",
                    self.parent,
                )
                queue = await channel.declare_queue(self.queue_name, passive=True)
                self.open_days.append(row["open"])
                self.released.append(row["released"])
                self.queued.append(queue.declaration_result.message_count or 0)
                await asyncio.sleep(0.02)
        finally:
            await connection.close()


async def test_a_backfill_of_7_days_end_to_end(gateway, settings, pool, run_service):
    resp = await gateway.post(
        "/tasks",
        json={"date_from": FIRST.isoformat(), "date_to": LAST.isoformat(), "token": "sandbox-token",
              "counter": COUNTER},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    parent = created["task_id"]
    assert [d["date"] for d in created["days"]] == [str(FIRST + dt.timedelta(days=i)) for i in range(7)]
    watch = Watch(pool, broker.Topology(settings.queue_prefix).queue(broker.SCORE_TASKS), parent)
    watching = asyncio.Event()
    watcher = asyncio.create_task(watch.run(watching))
    run_service(scorer_main, calm(settings))

    progress: list[int] = []

    async def finished():
        body = await (await gateway.get(f"/tasks/{parent}/status")).json()
        progress.append(body["progress"])
        return body if body["status"] in ("completed", "failed") else None

    try:
        status = await wait_for(finished, timeout=180, interval=0.2)
    finally:
        watching.set()
        with contextlib.suppress(Exception):
            await watcher
    assert status["status"] == "completed", status
    # paced: never more than 2 days queued or running, nor 2 messages waiting; every day in its turn
    assert len(watch.open_days) > 20 and max(watch.open_days) == PARALLEL, watch.open_days
    assert max(watch.queued) <= PARALLEL, watch.queued
    assert watch.released[0] == PARALLEL and watch.released[-1] == 7, watch.released
    assert watch.released == sorted(watch.released) and 3 <= len(set(watch.released)), watch.released
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
