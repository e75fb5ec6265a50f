"""The uploader's and poller's queries at 100k stored conversions: each is served by an index, with a plan
cheap enough that Postgres never compiles it (JIT starts at a cost of 100,000). Before the indexes, a file's
rows were found by a whole-table scan costed about 1e10 (sequential scans are off on service connections),
which took 1.3-1.9 s per statement at 30k rows."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from shared import db
from shared.db import batches, bulk, listings, tasks

JIT_ABOVE_COST = 100_000
BATCHES, ROWS_PER_BATCH = 1000, 100

FILL = """
INSERT INTO batches (id, source, counter_id, token_enc, status, updated_at)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(b), 12, '0'))::uuid, 'webhook', 1, '\\x00',
       (ARRAY['completed', 'uploaded', 'processing', 'pending', 'error'])[1 + b % 5],
       now() - interval '1 hour'
FROM generate_series(1, $1) AS b;
"""
FILL_FILES = """
INSERT INTO upload_files (id, batch_id, id_type, status, metrika_upload_id, next_poll_at, uploaded_at)
SELECT b, ('00000000-0000-0000-0000-' || lpad(to_hex(b), 12, '0'))::uuid, 'CLIENT_ID',
       (ARRAY['processed', 'uploaded', 'processing', 'new', 'failed'])[1 + b % 5], b::text,
       now() + make_interval(secs => b % 60), now() - interval '1 hour'
FROM generate_series(1, $1) AS b;
"""
FILL_ROWS = """
INSERT INTO conversions (batch_id, idx, id_type, identifier, target, date_time, status, file_id)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(b), 12, '0'))::uuid, i, 'CLIENT_ID', (b * 1000 + i)::text,
       'purchase', now(), (ARRAY['completed', 'uploaded', 'uploaded', 'pending', 'error'])[1 + b % 5], b
FROM generate_series(1, $1) AS b, generate_series(0, $2 - 1) AS i;
"""


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


@pytest.fixture
async def filled(settings):
    pool = await db.create_pool(settings.database_url)  # a service connection: sequential scans off
    async with pool.acquire() as conn:
        await conn.execute(FILL, BATCHES)
        await conn.execute(FILL_FILES, BATCHES)
        await conn.execute(FILL_ROWS, BATCHES, ROWS_PER_BATCH)
        await conn.execute("ANALYZE batches; ANALYZE upload_files; ANALYZE conversions")
    yield pool
    await pool.close()


BATCH = uuid.UUID(int=500)
QUERIES = {
    "status": (batches.GET_STATUS, BATCH),
    "batch": (batches.GET_BATCH, BATCH),
    "pending rows": (batches.PENDING_ROWS, BATCH),
    "split": (batches.SPLIT, BATCH),
    "files": (batches.FILES, BATCH),
    "file rows": (batches.FILE_ROWS, 500),
    "file uploaded": (batches.FILE_UPLOADED, 500, "1", "UPLOADED", 100, 1.0),
    "file failed": (batches.FILE_FAILED, 500, "x", None, True, None),
    "file processed": (batches.FILE_PROCESSED, 500, "PROCESSED", 100, 100, 0, 0),
    "file processing": (batches.FILE_PROCESSING, 500, "MATCHED", 1.0),
    "poll later": (batches.POLL_LATER, 500, "x", 1.0),
    "file states": (batches.FILE_STATES, BATCH),
    "row counts": (batches.ROW_COUNTS, BATCH),
    "claim keys": (batches.CLAIM_KEYS, BATCH),
    "mark duplicates": (batches.MARK_DUPLICATES, BATCH),
    "claim polls": (batches.CLAIM_POLLS, 50, 30.0),
    "claim due": (batches.CLAIM_DUE, 64, 300.0),
    "stranded": (batches.STRANDED, 64, 300.0),
    "first row errors": (batches.FIRST_ROW_ERRORS, [BATCH], 1000),
    "file notes": (batches.FILE_NOTES, [BATCH]),
    "retry files": (batches.RETRY_FILES, BATCH),
    "retry rows": (batches.RETRY_ROWS, BATCH),
    "fail rows": (batches.FAIL_ROWS, BATCH, [1, 2], "x", True),
}


async def plan_problems(pool, queries: dict[str, tuple[Any, ...]] | None = None) -> dict[str, str]:
    """Per query that is not served well: what is wrong with its plan."""
    problems: dict[str, str] = {}
    async with pool.acquire() as conn:
        for name, (query, *args) in (QUERIES if queries is None else queries).items():
            plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + query, *args))[0]["Plan"]
            scans = [n["Relation Name"] for n in _nodes(plan) if n["Node Type"] == "Seq Scan"]
            if scans or plan["Total Cost"] >= JIT_ABOVE_COST:
                problems[name] = f"cost {plan['Total Cost']:.0f}, sequential scans of {scans}"
    return problems


async def test_every_uploader_query_is_indexed_at_100k_rows(filled):
    assert await plan_problems(filled) == {}


async def test_without_the_file_index_a_file_s_rows_are_a_whole_table_scan(filled):
    # the check above can fail: with the index gone, the rows of a file are scanned for again
    await filled.execute("DROP INDEX conversions_file")
    problems = await plan_problems(filled)
    assert "file rows" in problems and "conversions" in problems["file rows"]


# issue 11: the listings and the search, at 100k tasks, 100k scored visits of one task, 100k batches (half
# of them webhook batches of 10 webhooks, half uploads) with a row each, some of them CRM rows
LISTED = 100_000
WEBHOOK = uuid.UUID(int=3)
TASK = uuid.UUID(int=7)
FILL_LISTED = """
INSERT INTO webhooks (id, name, counter_id, token_enc, secret_hash)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(w), 12, '0'))::uuid, 'w', 1, '\\x00', '\\x00'
FROM generate_series(0, 9) AS w;
INSERT INTO tasks (id, day, counter, token_enc, status, created_at)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(t), 12, '0'))::uuid, date '2026-01-01' + t % 300, t % 100,
       '\\x00', (ARRAY['completed', 'failed', 'pending', 'running'])[1 + t % 4],
       now() - make_interval(secs => t)
FROM generate_series(1, $1) AS t;
INSERT INTO task_visits (task_id, seq, visit_id, client_id, date_time, visit_duration, score, model_version,
                         device_class)
SELECT '00000000-0000-0000-0000-000000000007', v, v::text, (v % 5000)::text,
       timestamp '2026-01-01' + make_interval(secs => v), 100, (v % 100) / 100.0, 'v1',
       (ARRAY['desktop', 'mobile'])[1 + v % 2]
FROM generate_series(1, $1) AS v;
INSERT INTO batches (id, source, webhook_id, counter_id, token_enc, status, created_at)
SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(b), 12, '0'))::uuid,
       (ARRAY['webhook', 'single', 'webhook', 'bulk'])[1 + b % 4],
       CASE WHEN b % 2 = 0 THEN ('00000000-0000-0000-0000-' || lpad(to_hex(b % 10), 12, '0'))::uuid END, 1,
       '\\x00', (ARRAY['completed', 'accepted', 'error', 'processing', 'pending'])[1 + b % 5],
       now() - make_interval(secs => b)
FROM generate_series(1, $1) AS b;
INSERT INTO conversions (batch_id, idx, id_type, identifier, target, date_time, purchase_id, status)
SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(b), 12, '0'))::uuid, 0,
       (ARRAY['CLIENT_ID', 'USER_ID', 'YCLID'])[1 + b % 3], b::text, 'purchase', now(),
       CASE WHEN b % 3 = 0 THEN 'p' || b END, 'completed'
FROM generate_series(1, $1) AS b;
INSERT INTO crm_requests (webhook_id, batch_id, body)
SELECT '00000000-0000-0000-0000-000000000003', ('00000000-0000-0000-0001-' || lpad(to_hex(b), 12, '0'))::uuid,
       '\\x00'
FROM generate_series(0, $1, 100) AS b;
"""


@pytest.fixture
async def listed(settings):
    pool = await db.create_pool(settings.database_url)
    async with pool.acquire() as conn:
        for statement in FILL_LISTED.split(";\n")[:-1]:
            await conn.execute(statement, LISTED) if "$1" in statement else await conn.execute(statement)
        await conn.execute(
            "ANALYZE tasks; ANALYZE task_visits; ANALYZE batches; ANALYZE conversions; ANALYZE crm_requests"
        )
    yield pool
    await pool.close()


def listing_queries() -> dict[str, tuple[Any, ...]]:
    """Each listing's count and page query, with and without its filters."""
    since, until = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    day = dt.date(2026, 3, 1)
    listed = {
        "tasks": listings.tasks_queries({}, 100, 0),
        "tasks by status": listings.tasks_queries({"status": "failed"}, 100, 0),
        "tasks by counter": listings.tasks_queries({"counter": 42}, 100, 0),
        "tasks by day": listings.tasks_queries({"day": day}, 100, 0),
        "tasks by days": listings.tasks_queries(
            {"day_from": day, "day_to": day + dt.timedelta(days=6)}, 100, 0
        ),
        "tasks by all": listings.tasks_queries(
            {"status": "completed", "counter": 42, "day_from": day, "day_to": day}, 100, 0
        ),
        "webhook batches": listings.webhook_batches_queries(WEBHOOK, None, None, None, 100, 0),
        "webhook batches filtered": listings.webhook_batches_queries(WEBHOOK, "error", since, until, 100, 0),
        "uploads": listings.uploads_queries(None, None, 100, 0),
        "uploads by status": listings.uploads_queries(None, "completed", 100, 0),
        "uploads by task": listings.uploads_queries(TASK, "completed", 100, 0),
        "search client": listings.search_queries({"client_id": "300"}, 100, 0),
        "search user": listings.search_queries({"user_id": "301"}, 100, 0),
        "search yclid": listings.search_queries({"yclid": "302"}, 100, 0),
        "search purchase": listings.search_queries({"purchase_id": "p300"}, 100, 0),
        "search crm": listings.search_queries({"crm_id": "p300"}, 100, 0),
    }
    queries: dict[str, tuple[Any, ...]] = {}
    for name, ((count, count_args), (page, page_args)) in listed.items():
        queries[f"{name} (count)"] = (count, *count_args)
        queries[f"{name} (page)"] = (page, *page_args)
    queries["result by client"] = (tasks.PAGE_CLIENT_VISITS, TASK, 100, 0, "42")
    queries["result by client (count)"] = (tasks.COUNT_CLIENT_VISITS, TASK, "42")
    queries["summary"] = (tasks.SUMMARY, TASK)
    # issue 12: a day's runs and the one served, a backfill's days, a bulk upload made in the request
    queries["runs"] = (tasks.RUNS, TASK)
    queries["served run"] = (tasks.SERVED, TASK, None)
    queries["backfill days"] = (tasks.DAYS, TASK)
    queries["due tasks"] = (tasks.LOCK_DUE, 60.0, 100)
    # backfill pacing: the days waiting for their turn, and their messages
    queries["short backfills"] = (tasks.SHORT_BACKFILLS, 3, 100)
    queries["release days"] = (tasks.RELEASE, TASK, 3, None)
    queries["unpublished days"] = (tasks.UNPUBLISHED_DAYS, TASK)
    queries["bulk upload"] = (
        bulk.CREATE, uuid.uuid4(), TASK, 1, b"x", "purchase", "Europe/Moscow", 90, None, "r", "k", {}, None
    )  # fmt: skip
    return queries


async def test_every_listing_and_search_is_indexed_at_100k_rows(listed):
    assert await plan_problems(listed, listing_queries()) == {}
