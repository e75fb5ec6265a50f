"""Work locks: a session-level advisory lock per object, released by Postgres if its holder dies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"


def key(object_id: uuid.UUID) -> int:
    """The advisory lock key of an object (also taken, per transaction, by shared.db.webhooks)."""
    return object_id.int & ((1 << 63) - 1)


@asynccontextmanager
async def hold(pool: asyncpg.Pool, object_id: uuid.UUID) -> AsyncIterator[bool]:
    """Yield True while this process holds the object's lock, False if a live worker holds it.

    A dead worker's connection closes, which frees its lock, and its unacked message returns to the
    queue; so a duplicate delivery seen while the lock is held can simply be dropped.
    """
    async with pool.acquire() as conn:
        locked = bool(await conn.fetchval(TRY_LOCK, key(object_id)))
        try:
            yield locked
        finally:
            if locked:
                await conn.fetchval(UNLOCK, key(object_id))
