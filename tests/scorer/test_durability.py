"""The scorer under faults, in process, on the real stack: durable retries kept in Postgres, the sweeper
(lost messages, dead scorers, stuck tasks), leftovers of a crashed run, and POST /tasks/{id}/retry."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sandbox.app import FAULTS, LOG_REQUESTS
from sandbox.simulator import VISIT_FIELDS
from scorer.logs_api import LogsApiClient
from scorer.main import main as scorer_main
from shared import db
from shared.crypto import TokenCipher
from shared.db import locks, log_requests, tasks
from shared.settings import Settings
from tests.conftest import override, wait_for
from tests.test_scoring_flow import COUNTER, DAY, _all_results, _score_directly

TOKEN = "sandbox-token"


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Hours and minutes scaled down to fractions of a second; in-process retries still outlast the
    sandbox's one-second window of 10 Logs API requests per IP, as real ones do."""
    return override(
        settings,
        http_retry_attempts=4,
        http_retry_max_s=0.5,
        logs_poll_initial_s=0.4,
        retry_base_s=0.2,
        retry_max_s=0.5,
        sweep_interval_s=0.2,
        stale_after_s=1.0,
        task_lease_s=1.5,
    )


async def _submit(gateway: Any) -> uuid.UUID:
    resp = await gateway.post("/tasks", json={"date": DAY.isoformat(), "token": TOKEN, "counter": COUNTER})
    assert resp.status == 200
    return uuid.UUID((await resp.json())["task_id"])


async def _insert(pool: asyncpg.Pool, settings: Settings) -> uuid.UUID:
    """A task stored without its message (as if the message was lost)."""
    task_id = uuid.uuid4()
    token_enc = TokenCipher(settings.token_encryption_key).encrypt(TOKEN)
    await tasks.insert(pool, task_id, DAY, COUNTER, token_enc)
    return task_id


async def _status(gateway: Any, task_id: uuid.UUID) -> dict[str, Any]:
    resp = await gateway.get(f"/tasks/{task_id}/status")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def _finished(gateway: Any, task_id: uuid.UUID, timeout: float = 30) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await _status(gateway, task_id)
        return body if body["status"] in ("completed", "failed") else None

    result: dict[str, Any] = await wait_for(done, timeout=timeout, interval=0.05)
    return result


async def _assert_scored_as_directly(gateway: Any, task_id: uuid.UUID, tmp_path: Path) -> None:
    rows = await _all_results(gateway, task_id)
    expected, _ = _score_directly(tmp_path / "direct")
    assert [r["visitId"] for r in rows] == list(expected["visitId"])
    assert [r["dateTime"] for r in rows] == list(expected["dateTime"])


async def _all_released(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval("SELECT count(*) > 0 AND bool_and(released_at IS NOT NULL) FROM log_requests")
    )


def _log_request_statuses(sandbox: TestServer) -> list[str]:
    return [r.status for r in sandbox.app[LOG_REQUESTS].requests.values()]


async def test_logs_api_outage_waits_in_postgres_then_completes(
    gateway, fast, pool, run_service, sandbox, tmp_path
):
    sandbox.app[FAULTS].add(r"/logrequests/evaluate$", 503, times=None)
    task_id = await _submit(gateway)
    run_service(scorer_main, fast)

    async def waiting() -> dict[str, Any] | None:
        body = await _status(gateway, task_id)
        return body if body["status"] == "pending" and body["next_attempt_at"] and body["attempts"] else None

    seen = [await wait_for(waiting, timeout=20, interval=0.02)]
    # the status stays in the task's words and says when it is tried next, and why
    assert seen[0]["status"] == "pending" and seen[0]["error"] is None
    assert "HTTP 503" in seen[0]["last_error"] and "Backend error (sandbox fault)" in seen[0]["last_error"]
    assert dt.datetime.fromisoformat(seen[0]["next_attempt_at"]).tzinfo is not None
    row = await tasks.get(pool, task_id)
    assert row["retrying_since"] is not None and row["next_attempt_at"] is not None

    async def retried_again() -> bool:
        return int((await _status(gateway, task_id))["attempts"]) >= seen[0]["attempts"] + 1

    await wait_for(retried_again, timeout=20, interval=0.05)  # again by itself: the sweeper re-queued it
    sandbox.app[FAULTS].clear()  # Metrika is back: nobody restarts anything
    status = await _finished(gateway, task_id)
    assert status["status"] == "completed", status
    assert status["next_attempt_at"] is None and status["attempts"] >= 2
    await _assert_scored_as_directly(gateway, task_id, tmp_path)
    assert set(_log_request_statuses(sandbox)) == {"cleaned_by_user"}


async def test_outage_past_the_horizon_fails_then_retry_endpoint_reruns(
    gateway, fast, pool, run_service, sandbox, tmp_path
):
    sandbox.app[FAULTS].add(r"/logrequest/\d+/part/\d+/download$", 503, times=None)
    task_id = await _submit(gateway)
    run_service(scorer_main, override(fast, retry_horizon_s=0.6))

    status = await _finished(gateway, task_id)
    assert status["status"] == "failed"
    assert "gave up after retrying" in status["error"] and "RETRY_HORIZON_S" in status["error"]
    assert "Backend error (sandbox fault)" in status["error"]
    assert status["attempts"] >= 2 and status["next_attempt_at"] is None
    # every request the attempts created is cleaned, although no part could be downloaded
    await wait_for(lambda: _all_released(pool), timeout=10)
    statuses = _log_request_statuses(sandbox)
    assert len(statuses) >= 4 and set(statuses) == {"cleaned_by_user"}, statuses

    sandbox.app[FAULTS].clear()  # Metrika is back: the failed task is run again on request
    resp = await gateway.post(f"/tasks/{task_id}/retry")
    assert resp.status == 202
    status = await _finished(gateway, task_id)
    assert status["status"] == "completed" and status["last_error"] is None
    await _assert_scored_as_directly(gateway, task_id, tmp_path)


async def test_retry_endpoint(gateway, fast, pool, run_service, sandbox, tmp_path):
    resp = await gateway.post(f"/tasks/{uuid.uuid4()}/retry")
    assert (resp.status, await resp.json()) == (404, {"detail": "Task not found"})
    resp = await gateway.post("/tasks/not-a-uuid/retry")
    assert (resp.status, await resp.json()) == (404, {"detail": "Task not found"})

    task_id = await _submit(gateway)
    resp = await gateway.post(f"/tasks/{task_id}/retry")
    assert resp.status == 409
    assert "pending" in (await resp.json())["detail"]

    sandbox.app[FAULTS].add(r"/logrequests/evaluate$", 403, times=None, error_type="access_denied")
    run_service(scorer_main, fast)
    status = await _finished(gateway, task_id)
    assert status["status"] == "failed" and "access_denied" in status["error"]  # a final answer: no retry

    sandbox.app[FAULTS].clear()
    resp = await gateway.post(f"/tasks/{task_id}/retry")
    assert resp.status == 202
    assert await resp.json() == {"task_id": str(task_id), "status": "pending"}
    status = await _finished(gateway, task_id)
    assert status["status"] == "completed" and status["error"] is None and status["attempts"] == 1
    await _assert_scored_as_directly(gateway, task_id, tmp_path)
    resp = await gateway.post(f"/tasks/{task_id}/retry")
    assert resp.status == 409 and "completed" in (await resp.json())["detail"]


async def test_sweeper_requeues_a_task_whose_message_was_lost(gateway, fast, pool, run_service, tmp_path):
    task_id = await _insert(pool, fast)  # stored, never published
    run_service(scorer_main, fast)
    status = await _finished(gateway, task_id)
    assert status["status"] == "completed"
    await _assert_scored_as_directly(gateway, task_id, tmp_path)


async def test_dead_scorers_task_is_finished_by_another_and_its_leftovers_cleaned(
    gateway, fast, pool, run_service, sandbox, http, tmp_path
):
    # a scorer claimed the task, created a Logs API request, wrote parts, and died (no message left)
    task_id = await _insert(pool, fast)
    assert await tasks.claim(pool, task_id, 0.5)
    base_url = str(sandbox.make_url("")).rstrip("/")
    client = LogsApiClient(http, override(fast, metrika_api_url=base_url), TOKEN, COUNTER)
    orphan = str((await client.create(DAY, "visits", list(VISIT_FIELDS)))["request_id"])
    await log_requests.add(pool, COUNTER, orphan, task_id, "visits")
    parts = Path(fast.work_dir) / str(task_id)
    parts.mkdir(parents=True)
    (parts / "visits_0.tsv").write_text("left by the dead scorer")

    run_service(scorer_main, fast)
    status = await _finished(gateway, task_id)
    assert status["status"] == "completed" and status["attempts"] == 2
    await _assert_scored_as_directly(gateway, task_id, tmp_path)
    requests = sandbox.app[LOG_REQUESTS].requests
    assert requests[int(orphan)].status in ("canceled", "cleaned_by_user")
    assert set(_log_request_statuses(sandbox)) <= {"canceled", "cleaned_by_user"}
    assert await pool.fetchval("SELECT count(*) FROM log_requests WHERE released_at IS NULL") == 0
    assert await pool.fetchval("SELECT count(*) FROM log_requests") == 3
    assert not parts.exists()


async def test_sweeper_cleans_leftovers_of_a_failed_task(fast, pool, run_service, sandbox, http):
    # a run that crashed after creating a request and a part; the task was failed since
    task_id = await _insert(pool, fast)
    base_url = str(sandbox.make_url("")).rstrip("/")
    client = LogsApiClient(http, override(fast, metrika_api_url=base_url), TOKEN, COUNTER)
    orphan = str((await client.create(DAY, "hits", ["ym:pv:watchID"]))["request_id"])
    await log_requests.add(pool, COUNTER, orphan, task_id, "hits")
    await tasks.fail(pool, task_id, "failed for the test")
    parts = Path(fast.work_dir) / str(task_id)
    parts.mkdir(parents=True)
    (parts / "hits_0.tsv.part").write_text("x")
    (Path(fast.work_dir) / "not-a-task").mkdir()

    run_service(scorer_main, fast)

    async def cleaned() -> bool:
        released = await pool.fetchval("SELECT released_at IS NOT NULL FROM log_requests")
        return bool(released) and not parts.exists()

    await wait_for(cleaned, timeout=20)
    assert _log_request_statuses(sandbox) in (["canceled"], ["cleaned_by_user"])
    assert (Path(fast.work_dir) / "not-a-task").is_dir()  # only task directories are ours
    assert (await tasks.get(pool, task_id))["status"] == "failed"


async def test_task_requeued_too_often_without_progress_fails(gateway, fast, pool, run_service):
    # its scorer hangs: holds the task's lock, renews nothing; every re-queued message finds it locked
    task_id = await _insert(pool, fast)
    assert await tasks.claim(pool, task_id, 0.1)
    async with locks.hold(pool, task_id) as locked:
        assert locked
        run_service(scorer_main, override(fast, sweep_max_requeues=2, stale_after_s=0.5))
        status = await _finished(gateway, task_id)
    assert status["status"] == "failed"
    assert "re-queued 2 times without finishing" in status["error"], status


async def test_two_sweepers_never_requeue_one_task_twice(fast, database_url, queue_prefix):
    """Two replicas' sweepers at the same moment: each due task is published once."""
    from scorer.handler import Deps
    from scorer.sweeper import Sweeper
    from shared import broker

    pools = [await db.create_pool(database_url) for _ in range(2)]
    connection = await broker.connect(fast.amqp_url)
    try:
        ids = [await _insert(pools[0], fast) for _ in range(6)]
        await pools[0].execute("UPDATE tasks SET updated_at = now() - interval '1 hour'")
        async with aiohttp.ClientSession() as session:
            sweepers = [
                Sweeper(
                    Deps(pool, session, TokenCipher(fast.token_encryption_key), None, fast, None),  # type: ignore[arg-type]
                    connection,
                    broker.Topology(queue_prefix),
                )
                for pool in pools
            ]
            counts = await asyncio.gather(*(s.requeue() for s in sweepers))
        assert sum(counts) == len(ids)
        requeues = await pools[0].fetch("SELECT requeues FROM tasks")
        assert [r["requeues"] for r in requeues] == [1] * len(ids)
        assert await sweepers[0].requeue() == 0  # each now waits STALE_AFTER_S for its message
    finally:
        await connection.close()
        for pool in pools:
            await pool.close()
