"""Metrika answering 503, then 429, to every call for a while, then healthy again: nothing ends in error,
the statuses show the retry being waited for (`next_attempt_at`, `attempts`, `last_error`), and
afterwards every batch completes with each conversion uploaded once. And a file Metrika never finishes
processing ends in `error` after UPLOAD_PROCESSING_TIMEOUT_S, with that reason.

Yandex's outages last minutes to hours; here each phase lasts PHASE_S seconds, with the durable retry
scaled down to match (RETRY_BASE_S 0.5 s growing to RETRY_MAX_S 2 s, see stack.fault_settings), so
the uploader goes through the same many attempts it would make in a long outage."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.stack import (
    FINAL,
    OPEN,
    Stack,
    assert_exactly_once,
    conversion,
    new_client_ids,
    until,
    wait_all_completed,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

PHASE_S = 12.0
METRIKA = r"^/management/"
TIMED_OUT = re.compile(
    r"(did not|never) finish\w* processing|processing\b.*\b(time ?out|timed out)|not processed within", re.I
)


@dataclass
class Seen:
    name: str
    phase: str  # "503" or "429"
    at: dt.datetime
    body: dict[str, Any]


def _retry_shown(seen: Seen) -> bool:
    """The status names the retry being waited for: when (ISO 8601, with a zone), how many attempts so
    far, and why."""
    body = seen.body
    when = body.get("next_attempt_at")
    if not isinstance(when, str) or not isinstance(body.get("attempts"), int) or body["attempts"] < 1:
        return False
    if not isinstance(body.get("last_error"), str) or not body["last_error"].strip():
        return False
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        return False
    return moment.tzinfo is not None and abs((moment - seen.at).total_seconds()) < 120


async def test_metrika_503_then_429_outage_then_healthy_completes_everything(
    make_stack: Callable[..., Stack],
) -> None:
    stack: Stack = make_stack(stale_after_s=8)
    await stack.start_sandbox(conversion_processing_seconds=2)
    await stack.start_gateway()
    await stack.start_uploader()
    hook = await stack.webhook()
    ids = new_client_ids(5)
    await stack.register(ids)

    # a: uploaded before the outage; Metrika is still processing it when the status queries start failing
    a = await stack.submit(hook, [conversion(ids[0])])

    async def a_uploaded() -> bool:
        return bool((await stack.batch_status(hook, a))["metrika_upload_id"])

    await until(a_uploaded, timeout=20, interval=0.05, what="batch a uploaded")
    await stack.add_fault(path=METRIKA, status=503, times=None)
    b = await stack.submit(hook, [conversion(ids[1]), conversion(ids[2])])  # arrives during the 503s
    single = await stack.single(ids[3])
    watched: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "a": lambda: stack.batch_status(hook, a),
        "b": lambda: stack.batch_status(hook, b),
        "single": lambda: stack.upload_status(single),
    }
    seen = await _watch(watched, "503", PHASE_S)

    await stack.clear_faults()
    await stack.add_fault(path=METRIKA, status=429, times=None)
    c = await stack.submit(hook, [conversion(ids[4])])  # arrives during the 429s
    watched["c"] = lambda: stack.batch_status(hook, c)
    seen += await _watch(watched, "429", PHASE_S)
    await stack.clear_faults()
    healthy_at = time.monotonic()

    ended = [(s.name, s.phase, s.body["status"]) for s in seen if s.body["status"] not in OPEN]
    assert not ended, f"work ended during the outage: {ended[:5]}"
    for name, phase in (("a", "503"), ("b", "503"), ("single", "503"), ("b", "429"), ("c", "429")):
        shown = [s for s in seen if s.name == name and s.phase == phase and _retry_shown(s)]
        assert shown, (
            f"{name} never showed next_attempt_at/attempts/last_error during the {phase}s: "
            f"{[s.body for s in seen if s.name == name and s.phase == phase][-3:]}"
        )
        assert any(phase in s.body["last_error"] for s in shown), (
            f"{name}'s last_error never named the {phase}: {[s.body['last_error'] for s in shown][-3:]}"
        )
    await wait_all_completed(stack.settings.database_url, [a, b, c, single], timeout=60)
    print(f"{2 * PHASE_S:.0f}s of outage; everything completed {time.monotonic() - healthy_at:.1f}s after")
    bodies = {name: await status() for name, status in watched.items()}
    # an upload's final word is "processed" (the replaced API's), a webhook batch's "completed"
    assert {name: body["status"] for name, body in bodies.items()} == {
        "a": "completed",
        "b": "completed",
        "single": "processed",
        "c": "completed",
    }, bodies
    assert_exactly_once(await stack.received(), set(ids))


async def _watch(
    watched: dict[str, Callable[[], Awaitable[dict[str, Any]]]], phase: str, seconds: float
) -> list[Seen]:
    seen: list[Seen] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, status in watched.items():
            seen.append(Seen(name, phase, dt.datetime.now(dt.UTC), await status()))
        await asyncio.sleep(0.25)
    return seen


async def test_a_file_metrika_never_finishes_ends_in_error_after_the_processing_timeout(
    make_stack: Callable[..., Stack],
) -> None:
    stack: Stack = make_stack(upload_processing_timeout_s=3)
    await stack.start_sandbox(conversion_processing_seconds=3600)  # Metrika never gets to PROCESSED
    await stack.start_gateway()
    await stack.start_uploader()
    hook = await stack.webhook()
    ids = new_client_ids(2)
    await stack.register(ids)
    batch_id = await stack.submit(hook, [conversion(i) for i in ids])

    async def final() -> dict[str, Any] | None:
        body = await stack.batch_status(hook, batch_id)
        return body if body["status"] in FINAL else None

    body = await until(final, timeout=30, interval=0.2, what="the batch final")
    assert body["status"] == "error", body
    reasons = [e["reason"] for e in body["errors"] or []]
    assert reasons and any(TIMED_OUT.search(r) for r in reasons), body
    assert body["metrika_upload_id"], body
    assert_exactly_once(await stack.received(), set(ids))
