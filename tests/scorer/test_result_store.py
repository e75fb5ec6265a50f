"""Storing a task's scored visits (scorer.results): exact opaque ids, order, atomic completion, and an event
loop that stays free for the heartbeat and progress updates while a large day is stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import numpy as np
import pandas as pd
import pytest

from scorer import results
from scorer.handler import heartbeat
from shared.db import tasks

DAY = dt.date(2024, 9, 2)


def scored(n: int) -> pd.DataFrame:
    """n level-4+ visits as scoring.score_visits returns them: ids as text, 20 digits past 2**63."""
    rng = np.random.default_rng(7)
    starts = np.datetime64("2024-09-02T00:00:00") + np.sort(rng.integers(0, 86_400, n)).astype(
        "timedelta64[s]"
    )
    return pd.DataFrame(
        {
            "visitId": pd.Series(
                (np.uint64(2**64 - 1) - np.arange(n, dtype=np.uint64)).astype(str), dtype=str
            ),
            "clientId": pd.Series((np.uint64(2**63 + 1) + rng.permutation(n).astype(np.uint64)).astype(str)),
            "dateTime": pd.Series(np.datetime_as_string(starts, unit="s")).str.replace("T", " "),
            "visitDuration": rng.integers(0, 7200, n),
            "score": rng.random(n),
            "model_version": pd.Series(['hgb-2024.1 "eu",v2'] * n, dtype=str),  # quote and comma: CSV quoting
        }
    )


async def running_task(pool: asyncpg.Pool, lease_s: float = 60.0) -> uuid.UUID:
    task_id = uuid.uuid4()
    await tasks.insert(pool, task_id, DAY, 1, b"x")
    assert await tasks.claim(pool, task_id, lease_s) is not None
    return task_id


async def stored_rows(pool: asyncpg.Pool, task_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT seq, visit_id, client_id, date_time, visit_duration, score, model_version"
            " FROM task_visits WHERE task_id = $1 ORDER BY seq",
            task_id,
        )
    )


async def noop_report(percent: int, message: str) -> None:
    pass


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


async def test_a_large_result_is_stored_exactly_while_heartbeat_and_progress_go_on(pool, executor):
    """120k visits (about what a 1M-visit day yields): the store streams them chunk by chunk, and
    meanwhile, on the same event loop, the lease keeps being renewed and the progress row moves."""
    n = 120_000
    frame = scored(n)
    task_id = await running_task(pool, lease_s=0.3)  # renewed every 0.1 s
    reports: list[int] = []

    async def report(percent: int, message: str) -> None:
        reports.append(percent)
        await tasks.set_progress(pool, task_id, percent, message)

    storing = True
    seen: list[tuple[int, str, dt.datetime]] = []
    gaps: list[float] = []

    async def watch() -> None:
        """What another reader sees of the task while it is stored, and the loop's longest pause."""
        last = time.perf_counter()
        while storing:
            row = await pool.fetchrow(
                "SELECT progress, message, lease_until FROM tasks WHERE id = $1", task_id
            )
            seen.append((row["progress"], row["message"], row["lease_until"]))
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    watcher = asyncio.create_task(watch())
    async with heartbeat(pool, task_id, lease_s=0.3):
        stored = await results.store(
            pool,
            task_id,
            frame,
            executor=executor,
            report=report,
            total_visits=10 * n,
            model_version="hgb-2024.1",
            rows_per_chunk=10_000,
        )
        storing = False
    await watcher
    print(f"store of {n} visits: longest pause of the event loop {max(gaps) * 1000:.0f} ms")

    assert stored
    # progress through the store stage, one step per chunk, seen by others while the rows were streaming
    assert reports == sorted(reports) and reports[0] == 90 and len(set(reports)) >= 5
    during = [(p, lease) for p, message, lease in seen if message == "store"]
    assert len({p for p, _ in during}) >= 3, seen
    # the heartbeat went on renewing the lease meanwhile
    assert len({lease for _, lease in during if lease is not None}) >= 2, seen

    task = await tasks.get(pool, task_id)
    assert task["status"] == "completed" and task["progress"] == 100
    assert task["message"] == f"{n} level-4+ visits of {10 * n}" and task["total_visits"] == 10 * n
    rows = await stored_rows(pool, task_id)
    assert [r["seq"] for r in rows] == list(range(n))
    assert [r["visit_id"] for r in rows] == frame["visitId"].tolist()  # order kept, every digit
    assert [r["client_id"] for r in rows] == frame["clientId"].tolist()
    assert rows[0]["visit_id"] == str(2**64 - 1) and all(int(r["client_id"]) > 2**63 for r in rows)
    assert [r["date_time"] for r in rows] == [dt.datetime.fromisoformat(t) for t in frame["dateTime"]]
    assert [r["visit_duration"] for r in rows] == frame["visitDuration"].tolist()
    assert [r["score"] for r in rows] == frame["score"].tolist()  # floats exact, not rounded
    assert {r["model_version"] for r in rows} == {'hgb-2024.1 "eu",v2'}


async def test_ids_are_stored_as_the_text_they_were_read_as(pool, executor):
    frame = scored(3)
    frame["visitId"] = ["007", "18446744073709551615", "x-1"]  # opaque: no number parsing on the way
    frame["clientId"] = np.array([2**64 - 1, 2**63, 0], dtype=np.uint64)  # an exact integer column too
    task_id = await running_task(pool)
    assert await results.store(
        pool, task_id, frame, executor=executor, report=noop_report, total_visits=3, model_version="m"
    )
    rows = await stored_rows(pool, task_id)
    assert [r["visit_id"] for r in rows] == ["007", "18446744073709551615", "x-1"]
    assert [r["client_id"] for r in rows] == ["18446744073709551615", "9223372036854775808", "0"]


async def test_a_second_delivery_stores_nothing_twice(pool, executor):
    frame = scored(1_000)
    task_id = await running_task(pool)
    store = dict(executor=executor, report=noop_report, total_visits=5_000, model_version="m")
    assert await results.store(pool, task_id, frame, **store)
    # the task is finished: a late or duplicate run keeps the first outcome and adds no row
    assert not await results.store(pool, task_id, scored(1_500), **store)
    assert len(await stored_rows(pool, task_id)) == 1_000
    assert (await tasks.get(pool, task_id))["message"] == "1000 level-4+ visits of 5000"


async def test_a_day_without_level4_visits_completes_empty(pool, executor):
    task_id = await running_task(pool)
    empty = pd.DataFrame({c: [] for c in ("visitId", "clientId", "dateTime", "visitDuration", "score")})
    empty["model_version"] = pd.Series([], dtype=str)
    assert await results.store(
        pool, task_id, empty, executor=executor, report=noop_report, total_visits=40, model_version="m"
    )
    task = await tasks.get(pool, task_id)
    assert task["status"] == "completed" and task["message"] == "0 level-4+ visits of 40"
    assert await stored_rows(pool, task_id) == []


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("clientId", 1.8446744073709552e19, "'clientId' is double"),  # a float id may have lost digits
        ("dateTime", "2024-09-02T25:00", "'dateTime'"),
    ],
)
async def test_a_result_that_cannot_be_stored_says_which_column(pool, executor, column, value, error):
    frame = scored(3)
    frame[column] = value
    task_id = await running_task(pool)
    with pytest.raises(ValueError, match=error):
        await results.store(
            pool, task_id, frame, executor=executor, report=noop_report, total_visits=3, model_version="m"
        )
    assert (await tasks.get(pool, task_id))["status"] == "running"  # nothing stored, nothing completed
    assert await stored_rows(pool, task_id) == []
