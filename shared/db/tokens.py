"""The encrypted Metrika tokens of every table that keeps one, for `metrika-score rekey` (shared.crypto)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.db import Executor

TABLES = ("tasks", "batches", "webhooks")
FIRST_ID = uuid.UUID(int=0)
# one page of (id, token_enc) after the id given, in id order (the primary key's index)
PAGE = {table: f"SELECT id, token_enc FROM {table} WHERE id > $1 ORDER BY id LIMIT $2" for table in TABLES}
# swap each row's token for its re-encryption, unless it changed since it was read
REPLACE = {
    table: f"""
    WITH x AS (SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS x(id, old, new)),
    done AS (UPDATE {table} AS t SET token_enc = x.new FROM x WHERE t.id = x.id AND t.token_enc = x.old
             RETURNING 1)
    SELECT count(*) FROM done
    """
    for table in TABLES
}


async def page(db: Executor, table: str, after: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return list(await db.fetch(PAGE[table], after, limit))


async def replace(db: Executor, table: str, changes: Sequence[tuple[object, bytes, bytes]]) -> int:
    """Apply (id, old token_enc, new token_enc) changes; the number of rows changed."""
    if not changes:
        return 0
    ids, old, new = zip(*changes, strict=True)
    count = await db.fetchval(REPLACE[table], list(ids), list(old), list(new))
    return int(count)
