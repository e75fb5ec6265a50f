"""The scheduler's and the schedule endpoints' queries at 1,000 counters with a year of runs each (365k runs
and tasks): each served by an index, cheap enough that Postgres never compiles it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared import db
from shared.db import schedules
from tests.uploader.test_query_plans import plan_problems

COUNTERS, DAYS = 1000, 365
LAST = dt.date(2026, 11, 25)
FIRST = LAST - dt.timedelta(days=DAYS - 1)
SCHEDULE = uuid.UUID(int=500)
FILL = """
INSERT INTO schedules (id, counter, token_enc, first_day)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(c), 12, '0'))::uuid, c, '\\x00', $2
FROM generate_series(1, $1) AS c;
INSERT INTO tasks (id, day, counter, token_enc, status)
SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(c * 1000 + d), 12, '0'))::uuid, $2::date + d, c, '\\x00',
       (ARRAY['completed', 'completed', 'completed', 'failed'])[1 + d % 4]
FROM generate_series(1, $1) AS c, generate_series(0, $3 - 1) AS d;
INSERT INTO schedule_runs (counter, day, kind, schedule_id, task_id, status)
SELECT c, $2::date + d, 'score', ('00000000-0000-0000-0000-' || lpad(to_hex(c), 12, '0'))::uuid,
       ('00000000-0000-0000-0001-' || lpad(to_hex(c * 1000 + d), 12, '0'))::uuid,
       (ARRAY['completed', 'uploaded', 'uploaded', 'failed'])[1 + d % 4]
FROM generate_series(1, $1) AS c, generate_series(0, $3 - 1) AS d;
"""
QUERIES = {
    "active": (schedules.ACTIVE,),
    "missing days": (schedules.MISSING_DAYS, 500, FIRST, LAST),
    "rescore due": (schedules.RESCORE_DUE, 500, LAST - dt.timedelta(days=9), LAST - dt.timedelta(days=3)),
    "claim": (schedules.CLAIM, SCHEDULE, LAST, "score", uuid.uuid4()),
    "lock finished": (schedules.LOCK_FINISHED,),
    "get": (schedules.GET, SCHEDULE),
    "page": (schedules.PAGE, 100, 0),
    "runs page": (schedules.PAGE_RUNS, SCHEDULE, 100, 0),
    "count runs": (schedules.COUNT_RUNS, SCHEDULE),
    "update": (schedules.UPDATE, SCHEDULE, None, None, False, None, False, LAST, False, None),
    # the gauges read at the end of each tick (metrics)
    "schedules by state": (schedules.SCHEDULES_BY_STATE,),
    "runs waiting": (schedules.RUNS_WAITING,),
}


@pytest.fixture
async def filled(settings):
    pool = await db.create_pool(settings.database_url)  # a service connection: sequential scans off
    async with pool.acquire() as conn:
        await conn.execute(
            FILL.replace("$1", str(COUNTERS)).replace("$2", f"'{FIRST}'").replace("$3", str(DAYS))
        )
        await conn.execute("ANALYZE schedules; ANALYZE schedule_runs; ANALYZE tasks")
    yield pool
    await pool.close()


async def test_every_scheduler_query_is_indexed_at_a_year_of_runs(filled):
    assert await plan_problems(filled, QUERIES) == {}
