"""Connection pool and schema; the queries live in one module per table beside this file."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import TypeAlias

import asyncpg

# query functions take either, so a caller can run several inside its own transaction
Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool

SCHEMA = (Path(__file__).parent / "schema.sql").read_text()
# one lock id for "someone is applying the schema" so concurrent service starts do not race
_SCHEMA_LOCK = 7_316_222_001
_SCHEMA_DIGEST = hashlib.sha256(SCHEMA.encode()).hexdigest()
SCHEMA_APPLIED_TABLE = """
CREATE TABLE IF NOT EXISTS schema_applied (
    digest text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SCHEMA_APPLIED = "SELECT true FROM schema_applied WHERE digest = $1"
RECORD_SCHEMA = "INSERT INTO schema_applied (digest) VALUES ($1) ON CONFLICT DO NOTHING"
# a start meeting a running service's locks while it changes the schema: how often it tries
SCHEMA_ATTEMPTS = 5


# Every lookup these services make has an index. A plan that scans a table instead is chosen only while
# the table looks tiny, and the foreign-key checks keep their plan for the life of the connection: a
# batches table analysed at ten rows was then scanned whole for every conversion stored, thousands of
# rows later (a tenth of the gateway's throughput). Seq scans stay possible where no index serves.
_SERVER_SETTINGS = {"enable_seqscan": "off"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, reset: bool = True, durable: bool = True
) -> asyncpg.Pool:
    """`reset=False` skips asyncpg's reset query on every release: only for pools whose users never
    take session-level state (advisory locks, LISTEN, SET) — the gateway's.

    `durable=False` commits without waiting for the WAL flush (synchronous_commit off): only for writes
    whose loss in a crash is harmless (rate counters, "published" marks), so that a hot row's lock is not
    held across an fsync.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset else _no_reset,
        server_settings=_SERVER_SETTINGS if durable else {**_SERVER_SETTINGS, "synchronous_commit": "off"},
    )
    assert pool is not None
    return pool


async def prepare_database(conn: asyncpg.Connection) -> None:
    """Apply schema.sql (idempotent) under an advisory lock, unless this very text was applied already.

    Skipping matters: `ALTER TABLE ... IF NOT EXISTS` takes its table's exclusive lock even when there is
    nothing to do, so a service starting beside running ones could deadlock with their transactions. A
    new schema text is applied once (a start that still meets a deadlock tries again, see ensure_database).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(SCHEMA_APPLIED_TABLE)
        if await conn.fetchval(SCHEMA_APPLIED, _SCHEMA_DIGEST):
            return
        await conn.execute(SCHEMA)
        await conn.execute(RECORD_SCHEMA, _SCHEMA_DIGEST)


async def ensure_database(dsn: str) -> None:
    """Create the database named in `dsn` if it does not exist (connects to `postgres` to do so)."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        name = dsn.rsplit("/", 1)[1].split("?", 1)[0]
        admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn)
    try:
        for attempt in range(1, SCHEMA_ATTEMPTS + 1):
            try:
                await prepare_database(conn)
                return
            except asyncpg.DeadlockDetectedError:
                if attempt == SCHEMA_ATTEMPTS:
                    raise
                await asyncio.sleep(0.2 * attempt)
    finally:
        await conn.close()
