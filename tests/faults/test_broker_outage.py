"""RabbitMQ `stop_app` / `start_app` while webhooks keep arriving, on a private broker node: every
accepted batch ends `completed`, each conversion reaches Metrika once, and no service is restarted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest

from tests.faults.conftest import Broker
from tests.faults.stack import Sender, Stack, assert_exactly_once, new_client_ids, until, wait_all_completed

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

RATE = 10  # webhook requests per second


async def test_broker_stop_app_and_start_app_under_webhook_load(
    make_stack: Callable[..., Stack], private_broker: Broker, database_url: str
) -> None:
    stack: Stack = make_stack(amqp_url=private_broker.amqp_url)
    await stack.start_sandbox(conversion_processing_seconds=0.5)
    gateway = await stack.start_gateway()
    uploaders = [await stack.start_uploader(), await stack.start_uploader()]
    pids = [p.pid for p in [gateway, *uploaders]]
    hook = await stack.webhook()
    ids = new_client_ids(40 * RATE)
    await stack.register(ids)

    sender = Sender(stack, hook, ids, RATE)
    sending = asyncio.create_task(sender.run())
    await asyncio.sleep(2)
    await asyncio.to_thread(private_broker.ctl, "stop_app")
    stopped_at = time.monotonic()

    async def broker_reported_down() -> bool:
        return (await stack.health())["broker_connected"] is False

    await until(broker_reported_down, timeout=5, what="/health reports broker_connected false")
    await asyncio.sleep(max(0.0, stopped_at + 8 - time.monotonic()))  # 8 s of requests without a broker
    await asyncio.to_thread(private_broker.ctl, "start_app")
    started_at = time.monotonic()

    async def broker_reported_up() -> bool:
        return (await stack.health())["broker_connected"] is True

    await until(broker_reported_up, timeout=30, what="/health reports broker_connected true again")
    reconnected_s = time.monotonic() - started_at
    await asyncio.sleep(3)
    sender.stop.set()
    await sending

    during = [a for a in sender.answers if stopped_at <= a.sent < started_at]
    refused = [a for a in sender.answers if a.status != 200]
    accepted = sender.accepted()
    print(f"sent {len(sender.answers)}, {len(during)} while the broker was down, accepted {len(accepted)}")
    assert during, "no request was sent while the broker was down"
    # the README's promise: with RabbitMQ down a request still succeeds, the outbox publishes it later
    assert not refused, f"{len(refused)} requests refused, e.g. {refused[:3]}"

    await wait_all_completed(database_url, list(accepted.values()), timeout=60)
    completed_s = time.monotonic() - started_at
    print(
        f"after start_app: gateway reconnected in {reconnected_s:.1f}s, all completed in {completed_s:.1f}s"
    )
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    finally:
        await conn.close()
    assert_exactly_once(await stack.received(), set(accepted))
    # nobody restarted a service: the same processes ran throughout and are still running
    assert [p.pid for p in [gateway, *uploaders]] == pids
    assert all(p.running for p in [gateway, *uploaders]), [gateway, *uploaders]
