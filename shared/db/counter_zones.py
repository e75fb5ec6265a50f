"""Queries of the counter_zones table: each counter's time zone, as the Management API gave it."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from shared.db import Executor

GET = "SELECT timezone, fetched_at FROM counter_zones WHERE counter = $1"
# a later answer replaces an earlier one (every replica may ask; the last one wins, they agree anyway)
PUT = """
INSERT INTO counter_zones (counter, timezone, fetched_at) VALUES ($1, $2, now())
ON CONFLICT (counter) DO UPDATE SET timezone = excluded.timezone, fetched_at = excluded.fetched_at
RETURNING fetched_at
"""


class StoredZone(NamedTuple):
    timezone: str
    fetched_at: dt.datetime


async def get(db: Executor, counter: int) -> StoredZone | None:
    row = await db.fetchrow(GET, counter)
    return None if row is None else StoredZone(row["timezone"], row["fetched_at"])


async def put(db: Executor, counter: int, timezone: str) -> dt.datetime:
    """Store the counter's zone as fetched now; the time it was stored."""
    fetched_at: dt.datetime = await db.fetchval(PUT, counter, timezone)
    return fetched_at
