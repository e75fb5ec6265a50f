"""`kill -9` of an uploader process at the two moments where exactly-once is at stake: after Metrika
stored a file but before its upload id was recorded, and between a status poll and the status update.
The sandbox's received lines are the evidence: every conversion reaches Metrika exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.stack import (
    FINAL,
    STATUS_PATH,
    UPLOAD_PATH,
    Stack,
    Webhook,
    assert_exactly_once,
    conversion,
    new_client_ids,
    until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


async def _all_final(stack: Stack, hook: Webhook, batch_ids: list[str]) -> list[dict[str, Any]]:
    async def final() -> list[dict[str, Any]] | None:
        bodies = [await stack.batch_status(hook, b) for b in batch_ids]
        return bodies if all(b["status"] in FINAL for b in bodies) else None

    return list(await until(final, timeout=60, interval=0.2, what="every batch final"))


async def test_uploader_killed_after_metrika_stored_the_file_uploads_nothing_twice(
    make_stack: Callable[..., Stack],
) -> None:
    stack: Stack = make_stack()
    await stack.start_sandbox(conversion_processing_seconds=0.5)
    await stack.start_gateway()
    hook = await stack.webhook()
    first, second = new_client_ids(3), new_client_ids(3)
    await stack.register(first + second)
    # Metrika stores the upload and records its lines, but its answer takes 5 s and is then lost
    await stack.add_fault(path=UPLOAD_PATH, after=True, delay=5, status=503, times=1)
    uploader = await stack.start_uploader()
    batch_one = await stack.submit(hook, [conversion(c) for c in first])

    async def stored() -> bool:
        return sum((await stack.received()).values()) == 3

    await uploader.wait_until(stored, timeout=30)
    await uploader.kill9()  # inside the 5 s: the upload id never reached our database

    batch_two = await stack.submit(hook, [conversion(c) for c in second])  # while no uploader runs
    await stack.start_uploader("uploader-restarted")
    bodies = await _all_final(stack, hook, [batch_one, batch_two])

    assert [b["status"] for b in bodies] == ["completed", "completed"], bodies
    assert [b["processed"] for b in bodies] == [3, 3], bodies
    assert_exactly_once(await stack.received(), set(first + second))


async def test_uploader_killed_between_a_poll_and_the_status_update_finishes_the_batch(
    make_stack: Callable[..., Stack],
) -> None:
    stack: Stack = make_stack()
    # Metrika finishes a file at its first status query: the poll that is cut short saw PROCESSED
    await stack.start_sandbox(conversion_processing_seconds=0)
    await stack.start_gateway()
    hook = await stack.webhook()
    ids = new_client_ids(4)
    await stack.register(ids)
    await stack.add_fault(path=STATUS_PATH, after=True, delay=5, status=None, times=1)
    uploader = await stack.start_uploader()
    batch_id = await stack.submit(hook, [conversion(c) for c in ids])

    async def poll_in_flight() -> bool:  # the fault is taken (gone) once the status query arrived
        return not await stack.http_faults()

    await uploader.wait_until(poll_in_flight, timeout=30, interval=0.02)
    await uploader.kill9()  # Metrika answered PROCESSED; we never wrote it down
    status = await stack.batch_status(hook, batch_id)
    assert status["status"] in ("uploaded", "processing"), status

    await stack.start_uploader("uploader-restarted")
    (body,) = await _all_final(stack, hook, [batch_id])

    assert body["status"] == "completed" and body["processed"] == 4, body
    assert_exactly_once(await stack.received(), set(ids))
