"""`Idempotency-Key`: a request repeated under the same key gets its original answer, never a second batch.

The batch's id is derived from the key (uuid5 of the scope and the key), so the batches table's primary
key keeps a second batch out whatever the number of gateway replicas, restarts or concurrent repeats. The
request's SHA-256 and its answer are kept beside (shared.db.idempotency): a repeat of a stored request is
answered 200 with the original answer; the same key with a different request is 409. A request that
stored nothing (refused, or cut off) leaves the key free for the next one. Keys are scoped to the webhook,
or to the API key, that sent them, and are kept as long as their batch.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from shared import errors
from shared.db import idempotency

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_NAMESPACE = uuid.UUID("6f1c3d2e-9a41-5b7e-8c0d-3e2f1a4b5c6d")


@dataclass(frozen=True)
class Key:
    batch_id: uuid.UUID
    request_hash: bytes


def key_of(request: web.Request, scope: str, body: bytes) -> Key | None:
    """The request's key (None without the header); a malformed key is a 400."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    value = raw.strip()
    if not value or len(value) > MAX_KEY_LENGTH or not value.isascii() or not value.isprintable():
        raise errors.BadRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    digest = hashlib.sha256(request.query_string.encode() + b"\n" + body).digest()
    return Key(uuid.uuid5(_NAMESPACE, f"{scope}\n{value}"), digest)


def api_key_scope(request: web.Request) -> str:
    """Keys sent with one API key never meet those of another."""
    given = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return "api:" + hashlib.sha256(given.encode("utf-8", "surrogateescape")).hexdigest()


async def begin(pool: asyncpg.Pool, key: Key, answer: dict[str, Any]) -> web.Response | None:
    """None: store the batch under `key.batch_id` and answer `answer`. A response: this request repeats
    one that stored its batch already (its answer), or reuses the key for another request (409)."""
    if await idempotency.claim(pool, key.batch_id, key.request_hash, answer):
        return None
    found = await idempotency.earlier(pool, key.batch_id)
    if found is not None and found["stored"]:
        return _repeat(found, key)
    await idempotency.take_over(pool, key.batch_id, key.request_hash, answer)
    return None


async def lost_race(pool: asyncpg.Pool, key: Key) -> web.Response:
    """The batch's insert found the batch there: a concurrent repeat stored it first."""
    found = await idempotency.earlier(pool, key.batch_id)
    if found is None:  # cannot be: the key row is written before the batch
        raise errors.Conflict(f"A request with this {HEADER} is being processed; try again")
    return _repeat(found, key)


def _repeat(found: asyncpg.Record, key: Key) -> web.Response:
    if bytes(found["request_hash"]) != key.request_hash:
        raise errors.Conflict(f"This {HEADER} was already used with a different request")
    return web.json_response(found["answer"])


def is_duplicate_batch(exc: BaseException) -> bool:
    """The insert of a batch (or of its rows: which constraint fires first is Postgres' choice) whose
    id is taken."""
    return isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name in (
        "batches_pkey",
        "conversions_pkey",
    )
