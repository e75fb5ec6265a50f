"""Dead letters: the recorder that copies every message of the .dead queues into Postgres, and the
endpoints that list them and replay one through the outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import logging
import math
from contextlib import suppress
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from gateway import keys, pages, timestamps
from gateway.bodies import parse_query
from gateway.middlewares import validation_detail
from shared import broker, errors, logs
from shared.consumer import ERROR_HEADER, MessageHandler, RetryPolicy, run_sink
from shared.db import dead_letters, outbox

logger = logging.getLogger(__name__)

RECORDER_PREFETCH = 20
# a dead letter is one INSERT: those in hand when the gateway stops get this long, the rest are requeued
RECORDER_GRACE_S = 5.0
MAX_ID = 2**63 - 1


class DeadLetterRecorder:
    """Consumes the .dead queue of every routing key and inserts each message into `dead_letters`, then
    acks it; while Postgres is down the message waits and is requeued (never dropped)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        amqp_url: str,
        topology: broker.Topology,
        retry: RetryPolicy,
        *,
        name: str | None = None,
    ) -> None:
        self._pool = pool
        self._amqp_url = amqp_url
        self._topology = topology
        self._retry = retry
        self._name = name or f"{topology.prefix} dead-letter recorder"

    async def run(self, stop: asyncio.Event) -> None:
        """Record until `stop`, connecting (again, with backoff) for as long as the broker is away."""
        attempt = 0
        while not stop.is_set():
            try:
                connection = await broker.connect(self._amqp_url, name=self._name)
            except Exception as exc:
                delay = self._retry.delay(attempt)
                attempt += 1
                logger.warning("dead-letter recorder: RabbitMQ unreachable (%s); again in %.1fs", exc, delay)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                continue
            attempt = 0
            try:
                channel = await connection.channel()
                await broker.declare(channel, self._topology)
                handlers = {
                    self._topology.dead_queue(key): self._recorder_of(key) for key in broker.ROUTING_KEYS
                }
                await run_sink(
                    channel,
                    handlers,
                    stop,
                    prefetch=RECORDER_PREFETCH,
                    grace_s=RECORDER_GRACE_S,
                    retry=self._retry,
                )
            except Exception as exc:
                # the gateway serves on without its recorder rather than die of it; dead letters wait
                if errors.is_unavailable(exc):
                    logger.warning("dead-letter recorder: %s; starting again", exc)
                else:
                    logger.exception("dead-letter recorder failed; starting again")
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._retry.delay(0))
            finally:
                with suppress(Exception):
                    await asyncio.wait_for(connection.close(), timeout=5)

    def _recorder_of(self, routing_key: str) -> MessageHandler:
        async def record(message: AbstractIncomingMessage) -> None:
            headers = message.headers or {}
            reason = _reason(headers)
            await dead_letters.add(self._pool, routing_key, message.body, reason, _jsonable(headers))
            logger.info("dead letter from %s recorded: %s", routing_key, reason)

        return record


class ListQuery(pages.PageQuery):
    routing_key: str | None = None
    replayed: bool | None = None

    @field_validator("routing_key")
    @classmethod
    def _known_key(cls, value: str | None) -> str | None:
        if value is not None and value not in broker.ROUTING_KEYS:
            raise ValueError(f"must be one of {', '.join(broker.ROUTING_KEYS)}")
        return value


class DeadLetterPath(BaseModel):
    id: int = Field(ge=1, le=MAX_ID)


async def list_dead_letters(request: web.Request) -> web.Response:
    query = parse_query(request, ListQuery)
    pool = request.app[keys.PG_POOL]
    total = await dead_letters.count(pool, query.routing_key, query.replayed)
    rows = await dead_letters.page(pool, query.routing_key, query.replayed, query.limit, query.offset)
    data = [
        {
            "id": row["id"],
            "routing_key": row["routing_key"],
            "reason": row["reason"],
            "body": _shown(row["body"]),
            "created_at": timestamps.iso(row["created_at"]),
            "replayed_at": timestamps.iso(row["replayed_at"]),
            "replay_count": row["replay_count"],
        }
        for row in rows
    ]
    return pages.answer(data, total, query)


async def replay_dead_letter(request: web.Request) -> web.Response:
    """Publish the dead letter's body again under its routing key (through the outbox, written in the
    transaction that marks it replayed); a replay that fails again comes back as a new dead letter."""
    try:
        dead_letter_id = DeadLetterPath.model_validate({"id": request.match_info["id"]}).id
    except ValidationError as exc:
        raise errors.Unprocessable(validation_detail(exc, ("path",))) from None
    pool = request.app[keys.PG_POOL]
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await dead_letters.lock(conn, dead_letter_id)
            if row is None:
                raise errors.NotFound("Dead letter not found")
            body = _parsed(row["body"])
            if not isinstance(body, dict):
                raise errors.Conflict("The dead letter's body is not a JSON object: it cannot be replayed")
            outbox_id = await outbox.add(conn, row["routing_key"], body, headers := logs.message_headers())
            await dead_letters.mark_replayed(conn, dead_letter_id)
    except asyncpg.DataError:  # JSON that jsonb refuses (a \u0000 in a string)
        raise errors.Conflict(
            "The dead letter's body cannot be stored as JSON: it cannot be replayed"
        ) from None
    await request.app[keys.RELAY].publish_now([outbox_id], row["routing_key"], body, headers)
    return web.json_response({"id": dead_letter_id, "status": "replayed"}, status=202)


def _reason(headers: dict[str, Any]) -> str:
    """Why it was dead-lettered: our consumer's x-error header, else RabbitMQ's x-death record."""
    error = headers.get(ERROR_HEADER)
    if isinstance(error, bytes):
        error = error.decode("utf-8", "replace")
    if isinstance(error, str) and error:
        return error.replace("\x00", "")
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = _jsonable(deaths[0])
        return f"{death.get('reason', 'dead-lettered')} by RabbitMQ in queue {death.get('queue', '?')}"
    return "unknown: no x-error or x-death header"


def _jsonable(value: Any) -> Any:
    """AMQP header values as JSON that jsonb accepts (no NUL character, no NaN)."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace").replace("\x00", "")
    if isinstance(value, str):
        return value.replace("\x00", "")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _parsed(raw: bytes) -> Any:
    """The body as JSON; None if it is not JSON (NaN and Infinity are not JSON)."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _shown(raw: bytes) -> Any:
    parsed = _parsed(raw)
    return parsed if parsed is not None or raw.strip() == b"null" else raw.decode("utf-8", "replace")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
