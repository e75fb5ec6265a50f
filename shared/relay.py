"""Outbox relay: publishes outbox rows to RabbitMQ with confirms, now or whenever the broker is back."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from shared import broker
from shared.db import outbox

logger = logging.getLogger(__name__)


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

    @property
    def connected(self) -> bool:
        return self._exchange is not None and self._connection is not None and not self._connection.is_closed

    async def publish_now(self, outbox_id: int) -> bool:
        """Try to publish one freshly written row; False (and it stays queued) if the broker is away."""
        if not self.connected:
            self._wake.set()
            return False
        try:
            return await self._publish_pending(only_id=outbox_id) > 0
        except Exception as exc:
            logger.warning("publish of outbox row %s deferred: %s", outbox_id, exc)
            self._wake.set()
            return False

    async def try_connect(self) -> bool:
        """One connection attempt, for start-up; a failure is logged and left to `run` to retry."""
        try:
            await self._connect()
        except Exception as exc:
            logger.warning("RabbitMQ unreachable at start-up (%s); accepted work waits in the outbox", exc)
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a connection and drain the outbox every `interval_s` (or when woken) until `stop`."""
        while not stop.is_set():
            try:
                if not self.connected:
                    await self._connect()
                while await self._publish_pending() > 0:
                    pass
            except Exception as exc:
                logger.warning("outbox relay: %s; retrying in %.1fs", exc, self._interval_s)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wait_any(stop), timeout=self._interval_s)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._exchange = None

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

    async def _publish_pending(self, only_id: int | None = None, batch: int = 100) -> int:
        exchange = self._exchange
        if exchange is None:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await outbox.lock_pending(conn, batch, only_id)
            for row in rows:
                await broker.publish(exchange, row["routing_key"], row["body"])
            if rows:
                await outbox.mark_published(conn, [row["id"] for row in rows])
        return len(rows)
