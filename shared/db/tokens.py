"""The encrypted values (Metrika tokens, Bitrix24 secrets) of every table, for `metrika-score rekey`
(shared.crypto)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.db import Executor

# every encrypted column: the Metrika tokens, and a Bitrix24 webhook's application token and portal URL
COLUMNS = (
    ("tasks", "token_enc"),
    ("batches", "token_enc"),
    ("webhooks", "token_enc"),
    ("webhooks", "application_token_enc"),
    ("webhooks", "bitrix_webhook_url_enc"),
)
FIRST_ID = uuid.UUID(int=0)
# one page of (id, token_enc: the column's value) after the id given, in id order (the primary key's index)
PAGE = {
    (table, column): f"""
    SELECT id, {column} AS token_enc FROM {table} WHERE id > $1 AND {column} IS NOT NULL ORDER BY id LIMIT $2
    """
    for table, column in COLUMNS
}
# swap each row's value for its re-encryption, unless it changed since it was read
REPLACE = {
    (table, column): f"""
    WITH x AS (SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS x(id, old, new)),
    done AS (UPDATE {table} AS t SET {column} = x.new FROM x WHERE t.id = x.id AND t.{column} = x.old
             RETURNING 1)
    SELECT count(*) FROM done
    """
    for table, column in COLUMNS
}


async def page(
    db: Executor, table: str, after: uuid.UUID, limit: int, column: str = "token_enc"
) -> list[asyncpg.Record]:
    return list(await db.fetch(PAGE[table, column], after, limit))


async def replace(
    db: Executor, table: str, changes: Sequence[tuple[object, bytes, bytes]], column: str = "token_enc"
) -> int:
    """Apply (id, old value, new value) changes to `column`; the number of rows changed."""
    if not changes:
        return 0
    ids, old, new = zip(*changes, strict=True)
    count = await db.fetchval(REPLACE[table, column], list(ids), list(old), list(new))
    return int(count)
