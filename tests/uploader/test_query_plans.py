"""The uploader's and poller's queries at 100k stored conversions: each is served by an index, with a plan
cheap enough that Postgres never compiles it (JIT starts at a cost of 100,000). Before the indexes, a file's
rows were found by a whole-table scan costed about 1e10 (sequential scans are off on service connections),
which took 1.3-1.9 s per statement at 30k rows."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import db
from shared.db import batches

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


async def plan_problems(pool) -> dict[str, str]:
    """Per query that is not served well: what is wrong with its plan."""
    problems: dict[str, str] = {}
    async with pool.acquire() as conn:
        for name, (query, *args) in QUERIES.items():
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
