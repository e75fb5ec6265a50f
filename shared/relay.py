"""Outbox relay: publishes outbox rows to RabbitMQ with confirms, now or whenever the broker is back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from shared import broker
from shared.db import outbox

logger = logging.getLogger(__name__)

# rows younger than this are left to the request that wrote them (publish_now), not to the sweep
SWEEP_MIN_AGE_S = 5.0
MARK_INTERVAL_S = 0.05


class OutboxRelay:
    """Owns the AMQP connection of a producer; a request never fails because the broker is down."""

    def __init__(
        self, pool: asyncpg.Pool, amqp_url: str, topology: broker.Topology, interval_s: float
    ) -> None:
        self._pool = pool
        self._amqp_url = amqp_url
        self._topology = topology
        self._interval_s = interval_s
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._wake = asyncio.Event()
        self._published: list[int] = []
        self._marks: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._exchange is not None and self._connection is not None and not self._connection.is_closed

    async def publish_now(self, outbox_ids: Sequence[int], routing_key: str, body: dict[str, Any]) -> bool:
        """Publish one message standing for outbox rows the caller has just committed (one row, or
        several whose work the body covers); False (they stay queued) if the broker is away.

        The rows are marked published in a batch a moment later; if that mark is lost in a crash, the
        sweep publishes each row's own message again, which the idempotent consumers shrug off.
        """
        exchange = self._exchange
        if exchange is None or not self.connected:
            self._wake.set()
            return False
        try:
            await broker.publish(exchange, routing_key, body)
        except Exception as exc:
            logger.warning("publish of outbox rows %s deferred: %s", list(outbox_ids), exc)
            self._wake.set()
            return False
        self._published.extend(outbox_ids)
        if self._marks is None or self._marks.done():
            self._marks = asyncio.create_task(self._mark_soon())
        return True

    async def try_connect(self) -> bool:
        """One connection attempt, for start-up; a failure is logged and left to `run` to retry."""
        try:
            await self._connect()
        except Exception as exc:
            logger.warning("RabbitMQ unreachable at start-up (%s); accepted work waits in the outbox", exc)
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a connection and sweep the outbox every `interval_s` (or when woken) until `stop`."""
        while not stop.is_set():
            try:
                if not self.connected:
                    await self._connect()
                while await self._sweep() > 0:
                    pass
            except Exception as exc:
                logger.warning("outbox relay: %s; retrying in %.1fs", exc, self._interval_s)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wait_any(stop), timeout=self._interval_s)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._marks is not None:
            await asyncio.gather(self._marks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._exchange = None

    async def _mark_soon(self) -> None:
        await asyncio.sleep(MARK_INTERVAL_S)
        ids, self._published = self._published, []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await outbox.mark_published(conn, ids)
        except Exception as exc:
            logger.warning(
                "could not mark %s outbox rows published (%s); they will be sent again", len(ids), exc
            )

    async def _wait_any(self, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    async def _connect(self) -> None:
        await self.close()
        connection = await broker.connect(self._amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        self._exchange = await broker.declare(channel, self._topology)
        self._connection = connection
        logger.info("outbox relay connected to RabbitMQ")

    async def _sweep(self, batch: int = 100) -> int:
        """Publish rows that no request published (broker was down, or the process died first)."""
        exchange = self._exchange
        if exchange is None:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await outbox.lock_pending(conn, batch, SWEEP_MIN_AGE_S)
            for row in rows:
                await broker.publish(exchange, row["routing_key"], row["body"])
            if rows:
                await outbox.mark_published(conn, [row["id"] for row in rows])
        return len(rows)
