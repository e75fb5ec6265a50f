"""The gateway's composition root."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.bodies import MAX_BODY_BYTES
from gateway.dead_letters import RECORDER_GRACE_S, DeadLetterRecorder
from gateway.intake import Intake
from gateway.limits import AuthFailures
from gateway.middlewares import auth_middleware, error_middleware
from gateway.monitoring import add_request_id, observe_middleware
from gateway.routes import setup_routes
from gateway.webhook_guard import WebhookGuard
from shared import broker, db, metrics
from shared.consumer import RetryPolicy
from shared.counter_zones import CounterZones
from shared.crypto import TokenCipher
from shared.relay import OutboxRelay
from shared.settings import Settings


def create_app(settings: Settings) -> web.Application:
    settings.require_production_secrets()
    middlewares = [observe_middleware, error_middleware, auth_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app.on_response_prepare.append(add_request_id)
    app[keys.SETTINGS] = settings
    app[keys.CIPHER] = TokenCipher(settings.token_encryption_key)
    app[keys.API_KEYS] = frozenset(key.encode() for key in settings.api_key_set())
    app[keys.AUTH_FAILURES] = AuthFailures()
    topology = broker.Topology(settings.queue_prefix)
    queues = [name for key in broker.ROUTING_KEYS for name in (topology.queue(key), topology.dead_queue(key))]
    app[keys.METRICS_STATE] = metrics.State(queues)
    app.cleanup_ctx.append(pg_context)
    app.cleanup_ctx.append(zones_context)
    app.cleanup_ctx.append(relay_context)
    app.cleanup_ctx.append(intake_context)
    setup_routes(app)
    return app


async def pg_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    await db.ensure_database(settings.database_url)
    app[keys.PG_POOL] = await db.create_pool(settings.database_url, max_size=20, reset=False)
    app[keys.PG_LOSSY_POOL] = await db.create_pool(
        settings.database_url, max_size=10, reset=False, durable=False
    )
    yield
    await app[keys.PG_LOSSY_POOL].close()
    await app[keys.PG_POOL].close()


async def zones_context(app: web.Application) -> AsyncIterator[None]:
    """Counters' time zones, with the session that asks the Management API for them."""
    async with aiohttp.ClientSession() as session:
        app[keys.ZONES] = CounterZones(app[keys.PG_POOL], session, app[keys.SETTINGS])
        yield


async def relay_context(app: web.Application) -> AsyncIterator[None]:
    """The gateway's broker side: the outbox relay, and the recorder of dead letters."""
    settings = app[keys.SETTINGS]
    topology = broker.Topology(settings.queue_prefix)
    relay = OutboxRelay(app[keys.PG_LOSSY_POOL], settings.amqp_url, topology, settings.outbox_interval_s)
    app[keys.RELAY] = relay
    await relay.try_connect()
    recorder = DeadLetterRecorder(
        app[keys.PG_POOL], settings.amqp_url, topology, RetryPolicy.from_settings(settings)
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(recorder.run(stop))]
    yield
    stop.set()
    with suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=RECORDER_GRACE_S + 5)
    await relay.close()


async def intake_context(app: web.Application) -> AsyncIterator[None]:
    rate = app[keys.SETTINGS].webhook_rate_per_minute
    intake = Intake(app[keys.PG_POOL], app[keys.RELAY], rate)
    app[keys.INTAKE] = intake
    app[keys.WEBHOOK_GUARD] = WebhookGuard(app[keys.PG_POOL], app[keys.AUTH_FAILURES], rate)
    yield
    await intake.close()  # before the relay closes: the last groups still publish
