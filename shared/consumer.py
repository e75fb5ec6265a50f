"""The one consumer loop: parse, run the handler, and decide ack / retry / dead-letter in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import BaseModel, ValidationError

from shared import errors
from shared.broker import Topology, declare

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


async def run_consumer(
    channel: AbstractChannel,
    queue_name: str,
    schema: type[M],
    handler: Callable[[M], Awaitable[None]],
    stop: asyncio.Event,
    *,
    dead_exchange: AbstractExchange,
    dead_routing_key: str,
    prefetch: int,
    grace_s: float = 30.0,
) -> None:
    """Consume `queue_name` until `stop` is set; at most `prefetch` handlers run at once.

    - handler returns: ack.
    - body fails `schema`, or handler raises errors.Permanent: dead-lettered with the reason, at once.
    - any other exception: requeued once; on the redelivery it is dead-lettered with the reason.
    On stop, buffered messages go back to the queue and in-flight handlers get `grace_s` to finish.
    """
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(queue_name, ensure=True)
    running: set[asyncio.Task[None]] = set()

    async def process(message: AbstractIncomingMessage) -> None:
        try:
            body = schema.model_validate_json(message.body)
            await handler(body)
        except (ValidationError, errors.Permanent) as exc:
            await _dead_letter(message, dead_exchange, dead_routing_key, _reason(exc))
        except asyncio.CancelledError:
            await message.nack(requeue=True)
            raise
        except Exception as exc:
            if message.redelivered:
                logger.exception("message on %s failed again, dead-lettering", queue_name)
                await _dead_letter(message, dead_exchange, dead_routing_key, _reason(exc))
            else:
                logger.warning("message on %s failed (%s), requeueing once", queue_name, _reason(exc))
                await message.nack(requeue=True)
        else:
            await message.ack()

    async def consume() -> None:
        async with queue.iterator() as it:
            async for message in it:
                task = asyncio.create_task(process(message))
                running.add(task)
                task.add_done_callback(running.discard)

    consumer = asyncio.create_task(consume())
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if consumer in done:
            consumer.result()  # the consumer died: surface why
    finally:
        stopper.cancel()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        if running:
            _, pending = await asyncio.wait(set(running), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def serve(
    connection: AbstractRobustConnection,
    topology: Topology,
    routing_key: str,
    schema: type[M],
    handler: Callable[[M], Awaitable[None]],
    stop: asyncio.Event,
    *,
    prefetch: int,
    grace_s: float,
) -> None:
    """Declare the topology on a fresh channel and run the consumer of `routing_key`'s queue."""
    channel = await connection.channel(publisher_confirms=True)
    await declare(channel, topology)
    dead = await channel.get_exchange(topology.dead_exchange)
    logger.info("consuming %s", topology.queue(routing_key))
    await run_consumer(
        channel,
        topology.queue(routing_key),
        schema,
        handler,
        stop,
        dead_exchange=dead,
        dead_routing_key=routing_key,
        prefetch=prefetch,
        grace_s=grace_s,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return f"invalid message: {exc.error_count()} error(s): {exc.errors(include_url=False)[:3]}"
    return f"{type(exc).__name__}: {exc}"[:1000]


async def _dead_letter(
    message: AbstractIncomingMessage, exchange: AbstractExchange, routing_key: str, reason: str
) -> None:
    """Copy the message to the dead-letter exchange with the reason in a header, then ack it.

    If that publish fails, reject without requeue: the queue's own dead-letter exchange still catches it.
    """
    logger.error("dead-lettering a message: %s", reason)
    copy = aio_pika.Message(
        message.body,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={**(message.headers or {}), "x-error": reason},
    )
    try:
        await exchange.publish(copy, routing_key=routing_key)
    except Exception:
        logger.exception("could not publish to the dead-letter exchange")
        await message.reject(requeue=False)
    else:
        await message.ack()
