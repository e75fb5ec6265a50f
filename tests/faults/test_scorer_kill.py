"""Fault test 1: `kill -9` of a real scorer process while it prepares, downloads and scores a task; the next
scorer completes the task with exactly the results of an undisturbed run, and every Logs API request the
task created is cleaned (the sandbox, a real process too, lists them)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from sandbox import simulator
from scorer import model, scoring, tsv
from shared.settings import Settings
from tests.conftest import wait_for
from tests.faults.procs import Proc, running, settings_env, start_sandbox

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

COUNTER = 5151
DAY = dt.date.today() - dt.timedelta(days=2)
VISITS = 30_000  # enough to score for a moment, small enough to simulate and serve quickly
TOKEN = "sandbox-token"


@pytest.fixture
async def procs() -> AsyncIterator[list[Proc]]:
    async with running() as started:
        yield started


async def _task(pool: asyncpg.Pool, task_id: uuid.UUID) -> Any:
    return await pool.fetchrow("SELECT status, message, attempts FROM tasks WHERE id = $1", task_id)


async def _requests(pool: asyncpg.Pool, task_id: uuid.UUID) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT request_id, released_at FROM log_requests WHERE task_id = $1 ORDER BY created_at", task_id
        )
    )


async def _sandbox_requests(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    path = f"{url}/management/v1/counter/{COUNTER}/logrequests"
    async with http.get(path, headers={"Authorization": f"OAuth {TOKEN}"}) as resp:
        assert resp.status == 200
        return {str(r["request_id"]): r["status"] for r in (await resp.json())["requests"]}


def _expected(tmp_path: Path) -> list[tuple[Any, ...]]:
    """The undisturbed result: the scoring code on the very day the sandbox serves."""
    day = simulator.simulate_day(COUNTER, DAY, n_visits=VISITS)
    tmp_path.mkdir(parents=True)
    with open(tmp_path / "visits_0.tsv", "w") as out:
        simulator.write_tsv(day.visits, list(tsv.VISIT_FIELDS), out)
    with open(tmp_path / "hits_0.tsv", "w") as out:
        simulator.write_tsv(day.hits, list(tsv.HIT_FIELDS), out)
    frame, _ = scoring.score_dir(tmp_path, model.load_models(None))
    return [
        (v, c, dt.datetime.strptime(d, "%Y-%m-%d %H:%M:%S"), int(s), float(p), m)
        for v, c, d, s, p, m in zip(*(frame[col] for col in scoring.OUTPUT_COLUMNS[:6]), strict=True)
    ]


async def test_scorer_killed_while_preparing_downloading_and_scoring(
    settings, gateway, pool, procs, http, tmp_path
):
    _, url = await start_sandbox(procs, processing_seconds=1.5, visits_per_day=VISITS)
    work_dir = tmp_path / "scorer-work"
    scorer_settings = Settings(
        **{
            **settings.model_dump(),
            "metrika_api_url": url,
            "work_dir": str(work_dir),
            "logs_poll_initial_s": 0.3,
            "logs_poll_max_s": 0.5,
            "http_retry_attempts": 4,
            "http_retry_max_s": 0.5,
            "sweep_interval_s": 0.3,
            # a killed scorer's message comes back at once; the lease only has to outlast the slow steps
            "task_lease_s": 15.0,
            "shutdown_grace_s": 2.0,
        }
    )
    env = settings_env(scorer_settings, metrika_score_env="development")

    async def spare() -> Proc:
        """One more scorer, starting up while the others work: it takes over from the next one killed."""
        proc = Proc(f"scorer{len(procs)}", ["-m", "scorer"], env=env)
        procs.append(proc)
        return await proc.start()

    scorers = [await spare(), await spare()]
    for proc in scorers:
        await proc.wait_for_line("scorer ready", timeout=60)
    resp = await gateway.post("/tasks", json={"date": DAY.isoformat(), "token": TOKEN, "counter": COUNTER})
    task_id = uuid.UUID((await resp.json())["task_id"])
    parts = work_dir / str(task_id)

    async def holder(attempt: int) -> Proc:
        """The scorer that runs the task's `attempt`-th run."""

        async def find() -> Proc | None:
            line = f"{task_id}: scoring counter {COUNTER} for {DAY} (attempt {attempt})"
            return next((p for p in procs if p.name.startswith("scorer") and line in p.output), None)

        found: Proc = await wait_for(find, timeout=60, interval=0.02)
        return found

    async def at(stage: str, requests: int) -> bool:
        task = await _task(pool, task_id)
        return (task["message"] or "").startswith(stage) and len(await _requests(pool, task_id)) >= requests

    # 1. killed while Yandex prepares the logs: both requests created, neither cleaned
    first = await holder(1)
    await first.wait_until(lambda: at("prepare", 2), timeout=60)
    # the next run's downloads: one part arrives, the other is held back by the sandbox
    async with http.post(
        f"{url}/sandbox/faults", json={"path": r"/part/\d+/download$", "status": None, "delay": 60}
    ) as resp:
        assert resp.status == 201
    await first.kill9()
    await spare()
    assert set((await _sandbox_requests(http, url)).values()) <= {"created", "processed"}
    assert all(r["released_at"] is None for r in await _requests(pool, task_id))

    # 2. killed while downloading
    second = await holder(2)

    async def downloading() -> bool:
        return await at("download", 4) and any(parts.glob("*_0.tsv"))

    await second.wait_until(downloading, timeout=60)
    await second.kill9()
    await spare()
    assert parts.is_dir()  # the parts a killed scorer leaves behind
    leftovers = await _sandbox_requests(http, url)
    assert len(leftovers) == 4 and "processed" in leftovers.values()  # still counting against the quota

    # 3. killed while scoring: run it in small slices until the task says it builds features or scores
    third = await holder(3)
    await third.wait_until(lambda: at("prepare", 6), timeout=60)

    async def scoring_now() -> bool:
        task = await _task(pool, task_id)
        assert task["status"] == "running" and task["message"] != "store", f"scoring slipped past: {task}"
        return task["message"] in ("features", "scoring")

    await third.step_until(scoring_now, slice_s=0.01, timeout=60)
    await third.kill9()
    assert (await _task(pool, task_id))["status"] == "running"
    assert any(parts.glob("visits_*.tsv")) and any(parts.glob("hits_*.tsv"))

    # 4. the next scorer finishes it undisturbed
    fourth = await holder(4)

    async def finished() -> Any:
        task = await _task(pool, task_id)
        return task if task["status"] in ("completed", "failed") else None

    task = await fourth.wait_until(finished, timeout=60)
    assert task["status"] == "completed", task
    assert task["attempts"] == 4

    stored = await pool.fetch(
        "SELECT visit_id, client_id, date_time, visit_duration, score, model_version FROM task_visits"
        " WHERE task_id = $1 ORDER BY seq",
        task_id,
    )
    expected = _expected(tmp_path / "direct")
    assert len(expected) > 0
    assert [tuple(row) for row in stored] == expected

    # every request of every run is cleaned on Yandex's side, and known to be
    async def all_released() -> bool:
        return all(r["released_at"] is not None for r in await _requests(pool, task_id))

    await fourth.wait_until(all_released, timeout=30)
    final = await _sandbox_requests(http, url)
    assert len(final) == 8 and set(final) == {r["request_id"] for r in await _requests(pool, task_id)}
    assert set(final.values()) <= {"canceled", "cleaned_by_user"}, final
    assert not parts.exists()
