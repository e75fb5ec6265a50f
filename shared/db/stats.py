"""The counts a metrics scrape reports: each an indexed count, or a planner estimate where a table is big."""

from __future__ import annotations

import asyncpg

# a scrape's queries give up after this (a scrape must never hang on a busy database)
STATEMENT_TIMEOUT = "SET LOCAL statement_timeout = '2s'"
TASKS_BY_STATUS = "SELECT status, count(*) AS n FROM tasks WHERE day_to IS NULL GROUP BY status"  # day tasks
# both served by partial indexes (outbox_unpublished, dead_letters_unreplayed)
OUTBOX_BACKLOG = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
DEAD_LETTERS = (
    "SELECT routing_key, count(*) AS n FROM dead_letters WHERE replayed_at IS NULL GROUP BY routing_key"
)
# conversions grow without bound: counted exactly while small, estimated from the planner's statistics
# (rows x the frequency of each status) once the table holds more than EXACT_CONVERSIONS rows
EXACT_CONVERSIONS = 200_000
TABLE_ROWS = "SELECT reltuples FROM pg_class WHERE oid = to_regclass('conversions')"
CONVERSIONS_BY_STATUS = "SELECT status, count(*) AS n FROM conversions GROUP BY status"
CONVERSION_STATUS_SHARES = """
SELECT most_common_vals::text::text[] AS vals, most_common_freqs AS freqs FROM pg_stats
WHERE schemaname = current_schema() AND tablename = 'conversions' AND attname = 'status'
"""


async def snapshot(
    conn: asyncpg.Connection, exact_conversions: int = EXACT_CONVERSIONS
) -> dict[str, dict[str, float]]:
    """{"tasks": {status: n}, "conversions": {status: n}, "outbox": {"": n}, "dead_letters": {key: n}},
    read in one transaction under STATEMENT_TIMEOUT; conversions estimated past `exact_conversions`."""
    async with conn.transaction(readonly=True):
        await conn.execute(STATEMENT_TIMEOUT)
        tasks = {r["status"]: float(r["n"]) for r in await conn.fetch(TASKS_BY_STATUS)}
        backlog = float(await conn.fetchval(OUTBOX_BACKLOG))
        dead = {r["routing_key"]: float(r["n"]) for r in await conn.fetch(DEAD_LETTERS)}
        conversions = await _conversions(conn, exact_conversions)
    return {"tasks": tasks, "conversions": conversions, "outbox": {"": backlog}, "dead_letters": dead}


async def _conversions(conn: asyncpg.Connection, exact_conversions: int) -> dict[str, float]:
    rows = await conn.fetchval(TABLE_ROWS)
    if rows is None or rows < 0 or rows < exact_conversions:  # -1: never analysed yet
        return {r["status"]: float(r["n"]) for r in await conn.fetch(CONVERSIONS_BY_STATUS)}
    shares = await conn.fetchrow(CONVERSION_STATUS_SHARES)
    if shares is None or shares["vals"] is None:
        return {}
    return {
        status: round(rows * share) for status, share in zip(shares["vals"], shares["freqs"], strict=True)
    }
