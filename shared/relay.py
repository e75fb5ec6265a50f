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
# a publish or a close gives up after this long: a broker that went away must not hold a request
BROKER_TIMEOUT_S = 5.0
# a failed "published" mark is tried again after this, growing to MARK_RETRY_MAX_S
MARK_RETRY_S = 0.2
MARK_RETRY_MAX_S = 5.0
# close() waits this long for the last marks to be written
CLOSE_FLUSH_S = 5.0


class OutboxRelay:
    """Owns the AMQP connection of a producer; a request never fails because the broker is down."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        amqp_url: str,
        topology: broker.Topology,
        interval_s: float,
        *,
        name: str | None = None,
        sweep_min_age_s: float = SWEEP_MIN_AGE_S,
    ) -> None:
        self._pool = pool
        self._amqp_url = amqp_url
        self._topology = topology
        self._interval_s = interval_s
        self._name = name or f"{topology.prefix} outbox relay"
        self._sweep_min_age_s = sweep_min_age_s
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._wake = asyncio.Event()
        # published, not yet marked: waiting for the next mark, or being written now
        self._published: list[int] = []
        self._marking: list[int] = []
        self._marks: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True only while the broker connection is up (not while it is lost or reconnecting)."""
        return self._exchange is not None and broker.is_connected(self._connection)

    @property
    def connection(self) -> AbstractRobustConnection | None:
        """The broker connection while it is up (for a look at the queues), else None."""
        return self._connection if self.connected else None

    async def publish_now(
        self,
        outbox_ids: Sequence[int],
        routing_key: str,
        body: dict[str, Any],
        headers: dict[str, Any] | None = None,
    ) -> bool:
        """Publish one message standing for outbox rows the caller has just committed (one row, or
        several whose work the body covers) with the rows' `headers`; False (they stay queued) if the
        broker is away.

        The rows are marked published in a batch a moment later; if that mark is lost in a crash, the
        sweep publishes each row's own message again, which the idempotent consumers shrug off.
        """
        exchange = self._exchange
        if exchange is None or not self.connected:
            self._wake.set()
            return False
        try:
            publish = broker.publish(exchange, routing_key, body, headers)
            await asyncio.wait_for(publish, timeout=BROKER_TIMEOUT_S)
        except Exception as exc:
            logger.warning("publish of outbox rows %s deferred: %s", list(outbox_ids), exc)
            self._wake.set()
            return False
        self._published.extend(outbox_ids)
        # one marking task at a time; it runs until nothing is left to mark, so an id published while
        # a mark is being written goes into the next round of the same task (a task that has seen an
        # empty list has returned: there is no await between that check and its end)
        if self._marks is None or self._marks.done():
            self._marks = asyncio.create_task(self._mark_published())
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
        """Keep a connection and sweep the outbox every `interval_s` (or when woken) until `stop`.

        A connection that is lost is replaced here, every `interval_s` until the broker answers, rather
        than left to reconnect by itself: one path for "down at start-up" and "went away later".
        """
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
        """Write the marks of everything published so far (briefly), then close the connection."""
        if self._marks is not None:
            done, _ = await asyncio.wait({self._marks}, timeout=CLOSE_FLUSH_S)
            if not done:
                self._marks.cancel()
                unmarked = len(self._published) + len(self._marking)
                logger.warning("closing with %s published rows unmarked; they will be sent again", unmarked)
        await self._disconnect()

    async def _mark_published(self) -> None:
        """Mark published ids, a batch at a time, until none is left; a failed mark is tried again."""
        retry_s = MARK_RETRY_S
        while self._published:
            await asyncio.sleep(MARK_INTERVAL_S)
            self._marking, self._published = self._published, []
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await outbox.mark_published(conn, self._marking)
            except Exception as exc:
                logger.warning("could not mark %s outbox rows published (%s)", len(self._marking), exc)
                self._published[:0] = self._marking
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, MARK_RETRY_MAX_S)
            else:
                retry_s = MARK_RETRY_S
            finally:
                self._marking = []

    async def _wait_any(self, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    async def _connect(self) -> None:
        await self._disconnect()
        connection = await broker.connect(self._amqp_url, name=self._name)
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await broker.declare(channel, self._topology)
        except BaseException:
            await asyncio.wait_for(connection.close(), timeout=BROKER_TIMEOUT_S)
            raise
        self._connection = connection
        logger.info("outbox relay connected to RabbitMQ")

    async def _disconnect(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), timeout=BROKER_TIMEOUT_S)
            except Exception as exc:  # it is gone either way
                logger.info("closing the old broker connection: %s", exc)

    async def _sweep(self, batch: int = 100) -> int:
        """Publish rows that no request published (broker was down, or the process died first)."""
        exchange = self._exchange
        if exchange is None:
            return 0
        # rows published here but whose mark is not written yet are not pending: skip them
        unmarked = [*self._published, *self._marking]
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await outbox.lock_pending(conn, batch, self._sweep_min_age_s, unmarked)
            for row in rows:
                publish = broker.publish(exchange, row["routing_key"], row["body"], row["headers"])
                await asyncio.wait_for(publish, timeout=BROKER_TIMEOUT_S)
            if rows:
                await outbox.mark_published(conn, [row["id"] for row in rows])
        return len(rows)
