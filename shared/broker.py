"""Broker topology (names, exchanges, queues, dead-lettering) and the one way to publish."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
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


async def connect(url: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(url, timeout=10)


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


async def publish(exchange: AbstractExchange, routing_key: str, body: BaseModel | dict[str, Any]) -> None:
    """Publish a persistent JSON message and wait for the broker's confirm (the channel has confirms on)."""
    data = (
        body.model_dump_json().encode()
        if isinstance(body, BaseModel)
        else json.dumps(body, separators=(",", ":")).encode()
    )
    message = aio_pika.Message(
        data, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )
    await exchange.publish(message, routing_key=routing_key, mandatory=True)
