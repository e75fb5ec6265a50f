"""`python -m scheduler` twice, as two replicas would run: one run per counter and day between them, each
counter's days in its own time zone (asked of the sandbox's Management API)."""

from __future__ import annotations

import asyncio
import datetime as dt

from shared import schedule_days
from tests.conftest import outbox_drained, wait_for
from tests.faults.procs import Proc, running, settings_env
from tests.scheduler.test_scheduler import MOSCOW, NOVOSIBIRSK, add_schedule

# the sandbox's counters 54xxxxxx are in Asia/Novosibirsk, the others in Europe/Moscow
COUNTERS = {901: MOSCOW, 902: MOSCOW, 54_000_901: NOVOSIBIRSK}


async def test_two_scheduler_processes_make_one_run_per_counter_and_day(settings, pool):
    now = dt.datetime.now(dt.UTC)
    expected = []
    for counter, zone in COUNTERS.items():
        yesterday = schedule_days.yesterday(now, zone)
        # 00:00 counter-local: yesterday is due whatever the time now; the day before too (caught up)
        first_day = yesterday - dt.timedelta(days=1)
        await add_schedule(pool, settings, counter, first_day=first_day, run_at=dt.time(0))
        expected += [(counter, first_day), (counter, yesterday)]
    env = settings_env(settings, scheduler_interval_s=0.05)
    async with running() as procs:
        for name in ("scheduler-1", "scheduler-2"):
            procs.append(await Proc(name, ["-m", "scheduler"], env).start())
        await asyncio.gather(*(p.wait_for_line(r"scheduler ready") for p in procs))

        async def all_made() -> bool:
            return await _count(pool, "SELECT count(*) FROM schedule_runs") >= len(expected)

        await wait_for(all_made, what="runs")
        await asyncio.sleep(1.5)  # many more ticks of both
        assert all(p.running for p in procs)
    assert await _count(pool, "SELECT count(*) FROM schedule_runs") == len(expected)
    assert await _count(pool, "SELECT count(*) FROM tasks") == len(expected)
    days = await pool.fetch("SELECT counter, day FROM tasks ORDER BY counter, day")
    assert [tuple(d) for d in days] == sorted(expected)
    zones = await pool.fetch("SELECT counter, timezone FROM counter_zones ORDER BY counter")
    assert [tuple(z) for z in zones] == [(c, z.key) for c, z in sorted(COUNTERS.items())]
    assert await outbox_drained(pool)


async def _count(pool, query: str) -> int:
    return int(await pool.fetchval(query))
