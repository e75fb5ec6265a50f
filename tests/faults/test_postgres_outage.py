"""PostgreSQL stopped and started while webhooks arrive, on a private cluster: meanwhile the gateway
answers 503 with a JSON `detail` and a Retry-After header (never a 500, never a hang); afterwards it
accepts again, and every accepted batch ends `completed` with each conversion uploaded once. No
service is restarted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest

from tests.faults.conftest import Postgres
from tests.faults.stack import Sender, Stack, assert_exactly_once, new_client_ids, until, wait_all_completed

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]


async def test_postgres_stop_and_start_under_webhook_load(
    make_stack: Callable[..., Stack], private_postgres: Postgres
) -> None:
    database_url = f"{private_postgres.root_dsn}/metrika_faults_{uuid.uuid4().hex[:8]}"
    stack: Stack = make_stack(database_url=database_url)
    await stack.start_sandbox(conversion_processing_seconds=0.5)
    gateway = await stack.start_gateway()
    uploader = await stack.start_uploader()
    pids = [gateway.pid, uploader.pid]
    hook = await stack.webhook()
    ids = new_client_ids(400)
    await stack.register(ids)

    sender = Sender(stack, hook, ids, 10)
    sending = asyncio.create_task(sender.run())
    await asyncio.sleep(2)
    await asyncio.to_thread(private_postgres.stop, "fast")
    stopped_at = time.monotonic()
    await asyncio.sleep(6)
    await asyncio.to_thread(private_postgres.start)
    started_at = time.monotonic()

    async def accepting_again() -> bool:
        return any(a.status == 200 and a.sent > started_at for a in sender.answers)

    await until(accepting_again, timeout=30, what="the gateway accepts webhooks again")
    recovered_s = time.monotonic() - started_at
    await asyncio.sleep(2)
    sender.stop.set()
    await sending

    down = [a for a in sender.answers if stopped_at + 0.5 <= a.sent < started_at]
    statuses = sorted({a.status for a in sender.answers})
    print(
        f"sent {len(sender.answers)}, {len(down)} while Postgres was down; statuses {statuses}; "
        f"accepting again {recovered_s:.1f}s after the restart"
    )
    assert down, "no request was sent while Postgres was down"
    assert set(statuses) <= {200, 503}, [a for a in sender.answers if a.status not in (200, 503)][:3]
    unavailable = [a for a in down if a.status == 503]
    assert unavailable, "no 503 while Postgres was down"
    for a in unavailable:
        assert isinstance(a.body, dict) and isinstance(a.body.get("detail"), str) and a.body["detail"], a
        assert a.retry_after is not None and a.retry_after.isdigit(), a

    accepted = sender.accepted()
    await wait_all_completed(database_url, list(accepted.values()), timeout=60)
    received = await stack.received()
    refused_yet_uploaded = sorted(set(received) - set(accepted))
    if refused_yet_uploaded:
        print(f"refused with 503 but stored and uploaded anyway: {refused_yet_uploaded}")
    assert_exactly_once(received, set(accepted))
    assert [gateway.pid, uploader.pid] == pids and gateway.running and uploader.running
