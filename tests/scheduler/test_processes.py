"""`python -m scheduler` twice, as two replicas would run: one run per counter and day between them."""

from __future__ import annotations

import asyncio
import datetime as dt

from shared import schedule_days
from tests.conftest import outbox_drained, wait_for
from tests.faults.procs import Proc, running, settings_env
from tests.scheduler.test_scheduler import MOSCOW, add_schedule


async def test_two_scheduler_processes_make_one_run_per_counter_and_day(settings, pool):
    yesterday = schedule_days.yesterday(dt.datetime.now(dt.UTC), MOSCOW)
    counters = (901, 902, 903)
    first_day = yesterday - dt.timedelta(days=1)
    for counter in counters:
        # 00:00 Moscow: yesterday is due whatever the time now; the day before too (a day caught up)
        await add_schedule(pool, settings, counter, first_day=first_day, run_at=dt.time(0))
    env = settings_env(settings, scheduler_interval_s=0.05, counter_timezone="Europe/Moscow")
    async with running() as procs:
        for name in ("scheduler-1", "scheduler-2"):
            procs.append(await Proc(name, ["-m", "scheduler"], env).start())
        await asyncio.gather(*(p.wait_for_line(r"scheduler ready") for p in procs))
        await wait_for(lambda: _count(pool, "SELECT count(*) FROM schedule_runs"), what="runs")
        await asyncio.sleep(1.5)  # many more ticks of both
        assert all(p.running for p in procs)
    assert await _count(pool, "SELECT count(*) FROM schedule_runs") == 2 * len(counters)
    assert await _count(pool, "SELECT count(*) FROM tasks") == 2 * len(counters)
    days = await pool.fetch("SELECT counter, day FROM tasks ORDER BY counter, day")
    assert [tuple(d) for d in days] == [
        (c, yesterday + dt.timedelta(days=i)) for c in counters for i in (-1, 0)
    ]
    assert await outbox_drained(pool)


async def _count(pool, query: str) -> int:
    return int(await pool.fetchval(query))
