"""The one consumer loop: parse, run the handler, and decide ack / retry / dead-letter in one place.

- The handler returns: ack.
- The body fails its schema, or the handler raises errors.Permanent: dead-lettered at once, with the reason.
- A dependency is down (errors.is_unavailable: Postgres, RabbitMQ, a Metrika outage): the message is held
  for a backoff (growing while failures continue, reset by a success) and requeued, never dead-lettered.
  Holding it fills the prefetch window, so a consumer whose dependency is down stops taking new work.
- Anything else is a bug: retried `RetryPolicy.retries` times after a backoff, then dead-lettered.

Every log line written while a message is handled carries the request id its headers name (the request
that published it, shared/logs.py) and the task or batch it is about; every message is counted by queue
and outcome (shared/metrics.py).

A requeue cannot change a message's headers and classic queues do not count deliveries, so a bug's
retry republishes the message to its own queue (through the default exchange) with `x-attempts` one
higher and acks the original. Unlike a count kept in memory it survives restarts and is shared by every
replica; the price is that the copy goes to the back of the queue (order is not promised anyway), and
that a crash between the confirmed publish and the ack delivers it twice (the handlers are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from pamqp.common import FieldTable
from pydantic import BaseModel, ValidationError

from shared import errors, logs, metrics
from shared.broker import Topology, declare
from shared.metrika import backoff_s
from shared.settings import Settings

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
MessageHandler = Callable[[AbstractIncomingMessage], Awaitable[None]]

ATTEMPTS_HEADER = "x-attempts"
ERROR_HEADER = "x-error"
# an ack, nack or publish waits no longer than this: the broker may be away while we stop, and a
# message that was not acked is redelivered by the broker anyway once the connection is gone
BROKER_TIMEOUT_S = 5.0
# forgetting a consumer whose connection broke: the broker cannot answer, and need not
FORGET_TIMEOUT_S = 0.5
# after the grace period, cancelled handlers get this long to unwind before the loop returns without them
CANCEL_WAIT_S = 2.0


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.5
    max_s: float = 30.0
    retries: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.consumer_backoff_initial_s, settings.consumer_backoff_max_s, settings.consumer_retries
        )

    def delay(self, attempt: int) -> float:
        """The wait before retry `attempt` (0 first): doubling from initial_s up to max_s, less up to
        half at random, so that consumers which failed together do not all come back together."""
        return backoff_s(attempt + 1, base_s=self.initial_s, max_s=self.max_s)


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
    retry: RetryPolicy | None = None,
) -> None:
    """Consume `queue_name` until `stop` is set, at most `prefetch` handlers at once (see the module
    docstring for what happens to a message that fails).

    On stop no new message is taken, in-flight handlers get `grace_s` to finish, and the rest are
    cancelled and their messages requeued; this returns within `grace_s` + CANCEL_WAIT_S (plus
    BROKER_TIMEOUT_S if the broker is away) even if a handler ignores its cancellation.
    """

    async def handle(message: AbstractIncomingMessage) -> None:
        body = schema.model_validate_json(message.body)
        logs.add(**_log_fields(body))
        await handler(body)

    dead = _DeadLetters(dead_exchange, dead_routing_key)
    loop = _Loop(channel, {queue_name: handle}, stop, dead, retry or RetryPolicy(), prefetch, grace_s)
    await loop.run()


async def run_sink(
    channel: AbstractChannel,
    handlers: Mapping[str, MessageHandler],
    stop: asyncio.Event,
    *,
    prefetch: int,
    grace_s: float = 30.0,
    retry: RetryPolicy | None = None,
) -> None:
    """Consume queues whose messages have nowhere further to go (the dead-letter queues), each with its
    handler (queue name -> handler of the raw message); whatever a handler raises is retried with
    backoff, never dead-lettered."""
    loop = _Loop(channel, dict(handlers), stop, None, retry or RetryPolicy(), prefetch, grace_s)
    await loop.run()


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
    retry: RetryPolicy | None = None,
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
        retry=retry,
    )


@dataclass(frozen=True)
class _DeadLetters:
    exchange: AbstractExchange
    routing_key: str


class _Loop:
    def __init__(
        self,
        channel: AbstractChannel,
        handlers: dict[str, MessageHandler],
        stop: asyncio.Event,
        dead: _DeadLetters | None,
        retry: RetryPolicy,
        prefetch: int,
        grace_s: float,
    ) -> None:
        self._channel = channel
        self._handlers = handlers
        self._stop = stop
        self._dead = dead
        self._retry = retry
        self._prefetch = prefetch
        self._grace_s = grace_s
        self._running: set[asyncio.Task[None]] = set()
        # consecutive "dependency down" failures: the wait grows with them, a success resets it
        self._outages = 0

    async def run(self) -> None:
        await self._channel.set_qos(prefetch_count=self._prefetch)
        intake = {asyncio.create_task(self._consume(name)) for name in self._handlers}
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({*intake, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done & intake:
                task.result()  # a consumer died of something other than an outage: surface why
        finally:
            stopper.cancel()
            await self._shut_down(intake)

    async def _consume(self, queue_name: str) -> None:
        """Hand each message of one queue to a task of its own until stop.

        aio-pika's robust iterator waits through a reconnect and resumes; should it end or fail anyway
        (a reconnect that took over a minute), a new one is started, so consumption never stops for good.
        """
        attempt = 0
        while not self._stop.is_set():
            queue = None
            tag = None
            try:
                queue = await self._channel.get_queue(queue_name, ensure=True)
                async with queue.iterator() as messages:
                    tag = getattr(messages, "consumer_tag", None)
                    attempt = 0
                    async for message in messages:
                        self._start(message, queue_name)
            except Exception as exc:
                if not errors.is_unavailable(exc):
                    raise
                logger.warning("consuming %s failed (%s); starting again", queue_name, _reason(exc))
            if queue is not None and tag is not None:
                # a robust queue re-creates its consumers after a reconnect: forget this one first (done
                # before the call's first await; the broker forgot it already if the connection is gone)
                await _bounded(queue.cancel(tag), "cancel a consumer", timeout=FORGET_TIMEOUT_S)
            await self._pause(self._retry.delay(attempt))
            attempt += 1

    def _start(self, message: AbstractIncomingMessage, queue_name: str) -> None:
        task = asyncio.create_task(self._process(message, queue_name))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _process(self, message: AbstractIncomingMessage, queue_name: str) -> None:
        with logs.bind(request_id=logs.headers_request_id(message.headers)):
            try:
                if self._stop.is_set():  # taken from the buffer as the loop stopped: someone else's work now
                    await _bounded(message.nack(requeue=True), "requeue a message")
                    return
                with _measured(queue_name) as outcome:
                    try:
                        await self._handlers[queue_name](message)
                    except Exception as exc:
                        outcome[0] = await self._failed(message, exc, queue_name)
                    else:
                        self._outages = 0
                        await _bounded(message.ack(), "ack a message")
                        logger.debug("message from %s handled", queue_name)
            except asyncio.CancelledError:
                if not message.processed:
                    await _bounded(message.nack(requeue=True), "requeue a cancelled message")
                raise

    async def _failed(self, message: AbstractIncomingMessage, exc: Exception, queue_name: str) -> str:
        """Dead-letter, requeue or retry the message; which of them (its metrics outcome)."""
        unavailable = errors.is_unavailable(exc)
        if self._dead is not None and isinstance(exc, (ValidationError, errors.Permanent)):
            await self._dead_letter(message, self._dead, _reason(exc))
            return "dead_letter"
        elif self._dead is None or unavailable:
            delay = self._retry.delay(self._outages)
            self._outages += 1
            if unavailable:
                logger.warning("message from %s waits %.1fs: %s", queue_name, delay, _reason(exc))
            else:
                logger.exception("message from %s failed; retrying in %.1fs", queue_name, delay)
            await self._pause(delay)
            await _bounded(message.nack(requeue=True), "requeue a message")
            return "requeue"
        else:
            attempts = _attempts(message)
            if attempts >= self._retry.retries:
                logger.exception("message from %s failed %s times; dead-lettering", queue_name, attempts + 1)
                await self._dead_letter(message, self._dead, _reason(exc))
                return "dead_letter"
            delay = self._retry.delay(attempts)
            logger.exception("message from %s failed; retry %s in %.1fs", queue_name, attempts + 1, delay)
            await self._pause(delay)
            if self._stop.is_set():  # stopping is no fault of the message: back without counting
                await _bounded(message.nack(requeue=True), "requeue a message")
                return "requeue"
            await self._republish(message, queue_name, attempts + 1, _reason(exc))
            return "retry"

    async def _republish(
        self, message: AbstractIncomingMessage, queue_name: str, attempts: int, reason: str
    ) -> None:
        """Put a copy counting `attempts` at the back of `queue_name`, then ack the original; if the
        copy cannot be published, requeue the original (its count stays: that is the broker's fault)."""
        headers: FieldTable = {**(message.headers or {}), ATTEMPTS_HEADER: attempts, ERROR_HEADER: reason}
        exchange = self._channel.default_exchange
        if await _publish(exchange, _copy(message, headers), queue_name, "retry a message"):
            await _bounded(message.ack(), "ack a retried message")
        else:
            await _bounded(message.nack(requeue=True), "requeue a message")

    async def _dead_letter(self, message: AbstractIncomingMessage, dead: _DeadLetters, reason: str) -> None:
        """Copy the message to the dead-letter exchange with the reason in a header, then ack it; if that
        publish fails, reject it without requeue, and the queue's own dead-letter exchange catches it."""
        logger.error("dead-lettering a message from %s: %s", message.routing_key, reason)
        copy = _copy(message, {**(message.headers or {}), ERROR_HEADER: reason})
        if await _publish(dead.exchange, copy, dead.routing_key, "dead-letter a message"):
            await _bounded(message.ack(), "ack a dead-lettered message")
        else:
            await _bounded(message.reject(requeue=False), "reject a message")

    async def _pause(self, delay: float) -> None:
        """Sleep `delay`, or less if stop is set meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            pass

    async def _shut_down(self, intake: set[asyncio.Task[None]]) -> None:
        deadline = asyncio.get_running_loop().time() + self._grace_s
        # leaving an iterator cancels its consumer and requeues what the broker sent ahead
        for task in intake:
            task.cancel()
        done, stuck = await asyncio.wait(intake, timeout=BROKER_TIMEOUT_S)
        if stuck:
            logger.warning("the broker did not confirm the end of consuming; going on without it")
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved (and raised by run) already; not "never retrieved"
        if self._running:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            _, pending = await asyncio.wait(set(self._running), timeout=remaining)
            if pending:
                logger.warning("cancelling %s handlers still running after the grace period", len(pending))
                for task in pending:
                    task.cancel()
                _, ignoring = await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
                if ignoring:
                    # their messages go back to the queue when the connection closes, unacked
                    logger.error("%s handlers ignore their cancellation; leaving them", len(ignoring))


@contextmanager
def _measured(queue_name: str) -> Iterator[list[str]]:
    """Count a message handled in the block by queue and outcome (["ack"] unless the block changes it;
    a cancelled one is not counted), and time it."""
    outcome = ["ack"]
    in_flight = metrics.MESSAGES_IN_FLIGHT.labels(queue_name)
    in_flight.inc()
    started = time.perf_counter()
    try:
        yield outcome
    except asyncio.CancelledError:
        raise
    else:
        metrics.MESSAGES.labels(queue_name, outcome[0]).inc()
        metrics.MESSAGE_DURATION.labels(queue_name).observe(time.perf_counter() - started)
    finally:
        in_flight.dec()


def _log_fields(body: BaseModel) -> dict[str, object]:
    """The ids a message is about, for its log lines: its task, or its batch (one) or batch count."""
    fields: dict[str, object] = {}
    if (task_id := getattr(body, "task_id", None)) is not None:
        fields["task_id"] = task_id
    batch_ids = getattr(body, "batch_ids", None)
    if isinstance(batch_ids, list):
        if len(batch_ids) == 1:
            fields["batch_id"] = batch_ids[0]
        else:
            fields["batches"] = len(batch_ids)
    return fields


def _attempts(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPTS_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _copy(message: AbstractIncomingMessage, headers: FieldTable) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers,
        message_id=message.message_id,
    )


async def _publish(
    exchange: AbstractExchange, message: aio_pika.Message, routing_key: str, what: str
) -> bool:
    try:
        await asyncio.wait_for(exchange.publish(message, routing_key=routing_key), timeout=BROKER_TIMEOUT_S)
    except Exception as exc:
        logger.warning("could not %s (%s)", what, _reason(exc))
        return False
    return True


async def _bounded(action: Awaitable[object], what: str, timeout: float = BROKER_TIMEOUT_S) -> None:
    """An ack / nack / cancel that fails or hangs only because the channel is gone: the broker
    requeues whatever a closed channel had not acked, so there is nothing more to do."""
    try:
        await asyncio.wait_for(action, timeout=timeout)
    except Exception as exc:
        logger.warning("could not %s (%s); the broker redelivers it if needed", what, _reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return f"invalid message: {exc.error_count()} error(s): {exc.errors(include_url=False)[:3]}"
    return f"{type(exc).__name__}: {exc}"[:1000]
