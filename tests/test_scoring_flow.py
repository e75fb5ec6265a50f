"""End to end on real parts: gateway -> RabbitMQ -> scorer -> Postgres, on the Logs API sandbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import aio_pika

from sandbox import simulator
from scorer import model, scoring, tsv
from scorer.main import main as scorer_main
from shared import broker
from shared.db import outbox
from shared.relay import OutboxRelay
from shared.schemas import ScoreTask
from tests.conftest import AMQP_URL, override, wait_for

DAY = dt.date.today() - dt.timedelta(days=2)
COUNTER = 4242


def calm(settings):
    """The test settings with polling and in-process retries that stay within the sandbox's 10 Logs API
    requests per second, as the defaults do (the tests' 0.2 s polls of two sources are that rate alone)."""
    return override(settings, logs_poll_initial_s=0.4, http_retry_max_s=0.5)


def _score_directly(tmp_path, n_visits: int = 400):
    """The scoring code run directly on the same sandbox data the API serves."""
    day = simulator.simulate_day(COUNTER, DAY, n_visits=n_visits)
    tmp_path.mkdir(parents=True, exist_ok=True)
    with open(tmp_path / "visits_0.tsv", "w") as out:
        simulator.write_tsv(day.visits, list(tsv.VISIT_FIELDS), out)
    with open(tmp_path / "hits_0.tsv", "w") as out:
        simulator.write_tsv(day.hits, list(tsv.HIT_FIELDS), out)
    frame, total = scoring.score_dir(tmp_path, model.load_models(None))
    return frame, total


async def _all_results(gateway, task_id):
    rows, offset = [], 0
    while True:
        resp = await gateway.get(f"/tasks/{task_id}/result", params={"limit": 50, "offset": offset})
        assert resp.status == 200
        body = await resp.json()
        rows += body["data"]
        offset += 50
        if not body["pagination"]["has_more"]:
            assert body["pagination"]["total"] == len(rows)
            return rows


async def test_task_is_scored_end_to_end_and_equals_direct_scoring(gateway, settings, run_service, tmp_path):
    resp = await gateway.post(
        "/tasks", json={"date": DAY.isoformat(), "token": "sandbox-token", "counter": COUNTER}
    )
    task_id = (await resp.json())["task_id"]
    run_service(scorer_main, calm(settings))

    seen: list[tuple[str, int, str]] = []
    attempts: list[int] = []

    async def finished():
        body = await (await gateway.get(f"/tasks/{task_id}/status")).json()
        seen.append((body["status"], body["progress"], body["message"]))
        attempts.append(body["attempts"])
        return body if body["status"] in ("completed", "failed") else None

    status = await wait_for(finished, timeout=60, interval=0.02)
    assert status["status"] == "completed", status
    assert status["progress"] == 100 and status["error"] is None
    assert status["started_at"] and status["finished_at"] >= status["started_at"]
    # progress never goes backwards within an attempt (a retried attempt starts again from 0)
    for attempt in set(attempts):
        progress = [p for (s, p, _), a in zip(seen, attempts, strict=True) if a == attempt and s != "pending"]
        assert progress == sorted(progress), seen
    progress = [p for _, p, _ in seen]
    assert any(0 < p < 100 for p in progress), seen
    stages = {m.split(" ")[0] for s, _, m in seen if s == "running" and m}
    assert stages & {"evaluate", "prepare", "download"}, seen

    rows = await _all_results(gateway, task_id)
    expected, total = _score_directly(tmp_path / "direct")
    assert total == 400
    assert len(rows) == len(expected) > 0
    assert [r["visitId"] for r in rows] == list(expected["visitId"])
    assert [r["clientId"] for r in rows] == list(expected["clientId"])
    assert [r["dateTime"] for r in rows] == list(expected["dateTime"])
    assert [r["visitDuration"] for r in rows] == [int(v) for v in expected["visitDuration"]]
    assert [round(r["score"], 4) for r in rows] == [round(float(s), 4) for s in expected["score"]]
    assert all(isinstance(r["visitId"], str) and r["visitId"].isdigit() for r in rows)


async def test_logs_api_4xx_fails_the_task_with_yandex_message(gateway, settings, run_service):
    resp = await gateway.post(
        "/tasks", json={"date": DAY.isoformat(), "token": "wrong-token", "counter": COUNTER}
    )
    task_id = (await resp.json())["task_id"]
    run_service(scorer_main, settings)

    async def finished():
        body = await (await gateway.get(f"/tasks/{task_id}/status")).json()
        return body if body["status"] in ("completed", "failed") else None

    status = await wait_for(finished, timeout=30)
    assert status["status"] == "failed"
    assert "Invalid oauth_token" in status["error"]
    assert "wrong-token" not in status["error"]
    resp = await gateway.get(f"/tasks/{task_id}/result")
    assert resp.status == 409


async def test_redelivered_task_does_not_duplicate_results(gateway, settings, pool, run_service, tmp_path):
    resp = await gateway.post(
        "/tasks", json={"date": DAY.isoformat(), "token": "sandbox-token", "counter": COUNTER}
    )
    task_id = uuid.UUID((await resp.json())["task_id"])
    # the same message twice more, as a broker redelivery or a retrying producer would send it
    relay = OutboxRelay(pool, settings.amqp_url, broker.Topology(settings.queue_prefix), 0.1)
    assert await relay.try_connect()
    message = ScoreTask(task_id=task_id).model_dump(mode="json")
    for _ in range(2):
        outbox_id = await outbox.add(pool, broker.SCORE_TASKS, message)
        assert await relay.publish_now([outbox_id], broker.SCORE_TASKS, message)
    await relay.close()
    # two scorer processes on one queue
    run_service(scorer_main, calm(settings))
    run_service(scorer_main, override(calm(settings), scorer_concurrency=1))

    async def completed():
        return await pool.fetchval("SELECT status = 'completed' FROM tasks WHERE id = $1", task_id)

    await wait_for(completed, timeout=60)
    await asyncio.sleep(1.0)  # let the duplicates be consumed
    expected, _ = _score_directly(tmp_path / "direct")
    stored = await pool.fetchval("SELECT count(*) FROM task_visits WHERE task_id = $1", task_id)
    assert stored == len(expected)
    attempts = await pool.fetchval("SELECT attempts FROM tasks WHERE id = $1", task_id)
    assert attempts >= 1
    queue = broker.Topology(settings.queue_prefix)
    # nothing was dead-lettered: duplicates of a finished task are simply acknowledged
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        dead = await channel.get_queue(queue.dead_queue(broker.SCORE_TASKS))
        assert await dead.get(fail=False, timeout=2) is None
        work = await channel.get_queue(queue.queue(broker.SCORE_TASKS))
        assert await work.get(fail=False, timeout=2) is None
