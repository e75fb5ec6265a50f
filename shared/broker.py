"""Broker topology (names, exchanges, queues, dead-lettering) and the one way to publish."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from pamqp.common import FieldTable
from pydantic import BaseModel

SCORE_TASKS = "score_tasks"
CONVERSION_UPLOADS = "conversion_uploads"
ROUTING_KEYS = (SCORE_TASKS, CONVERSION_UPLOADS)


class Topology:
    """Names derived from one prefix, so stacks and tests can share a broker without colliding."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.exchange = prefix
        self.dead_exchange = f"{prefix}.dlx"

    def queue(self, routing_key: str) -> str:
        return f"{self.prefix}.{routing_key}"

    def dead_queue(self, routing_key: str) -> str:
        return f"{self.prefix}.{routing_key}.dead"


async def connect(
    url: str, *, name: str | None = None, reconnect_interval_s: float = 2.0
) -> AbstractRobustConnection:
    """A connection that reconnects by itself (restoring its channels, queues and consumers) every
    `reconnect_interval_s` while the broker is away; `name` is shown by the broker (and
    `rabbitmqctl list_connections client_properties`), so operators and tests can tell connections apart.
    """
    properties: FieldTable | None = {"connection_name": name} if name else None
    return await aio_pika.connect_robust(
        url, timeout=10, client_properties=properties, reconnect_interval=reconnect_interval_s
    )


def is_connected(connection: AbstractRobustConnection | None) -> bool:
    """True while the connection is up; a robust connection that is reconnecting is not `is_closed`,
    but its `connected` event is cleared from the moment the transport is lost until it is back."""
    return connection is not None and not connection.is_closed and connection.connected.is_set()


async def declare(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare the work exchange, the dead-letter exchange, and a durable queue + dead queue per key."""
    exchange = await channel.declare_exchange(topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    dead = await channel.declare_exchange(topology.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    for key in ROUTING_KEYS:
        queue = await channel.declare_queue(
            topology.queue(key),
            durable=True,
            arguments={"x-dead-letter-exchange": topology.dead_exchange, "x-dead-letter-routing-key": key},
        )
        await queue.bind(exchange, key)
        dead_queue = await channel.declare_queue(topology.dead_queue(key), durable=True)
        await dead_queue.bind(dead, key)
    return exchange


async def publish(
    exchange: AbstractExchange,
    routing_key: str,
    body: BaseModel | dict[str, Any],
    headers: FieldTable | None = None,
) -> None:
    """Publish a persistent JSON message and wait for the broker's confirm (the channel has confirms on)."""
    data = (
        body.model_dump_json().encode()
        if isinstance(body, BaseModel)
        else json.dumps(body, separators=(",", ":")).encode()
    )
    message = aio_pika.Message(
        data,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers or None,
    )
    await exchange.publish(message, routing_key=routing_key, mandatory=True)
