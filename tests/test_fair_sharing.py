"""Fair sharing: per-counter slots shared by every replica, and one broken counter never delays another's
task (real Postgres, RabbitMQ and the sandbox)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid
from typing import Any

import aiohttp
import pytest

from sandbox.app import CONVERSIONS, FAULTS, LOG_REQUESTS, REQUEST_LOG, VISITORS
from sandbox.simulator import VISIT_FIELDS
from scorer.logs_api import LogsApiClient
from scorer.main import main as scorer_main
from shared.crypto import TokenCipher
from shared.db.slots import LOGS_API, UPLOADS, CounterSlots, SlotsBusy
from shared.metrika import COUNTER_BUSY, MetrikaError
from shared.settings import Settings
from tests.conftest import outbox_drained, override, wait_for
from tests.test_scoring_flow import calm
from uploader.deps import Deps
from uploader.main import main as uploader_main

DAY = dt.date.today() - dt.timedelta(days=2)
HEALTHY = 4242
TOKEN = "sandbox-token"


@pytest.fixture
async def two_slots(database_url):
    """Two processes' slot books on one database (each has its own Postgres connection)."""
    made = [CounterSlots(database_url, {LOGS_API: 3, UPLOADS: 2}, wait_s=10) for _ in range(2)]
    yield made
    for slots in made:
        await slots.close()


async def test_slots_are_shared_by_processes_and_freed_with_a_connection(two_slots):
    first, second = two_slots
    holding = 0
    most = 0

    async def hold(slots: CounterSlots) -> None:
        nonlocal holding, most
        async with slots.hold(LOGS_API, 1):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.05)
            holding -= 1

    await asyncio.gather(*(hold(two_slots[i % 2]) for i in range(12)))
    assert most == 3
    # all of one counter's slots held by the first process: the second waits, then gives up; another
    # counter and another kind are not affected
    async with first.hold(LOGS_API, 1), first.hold(LOGS_API, 1), first.hold(LOGS_API, 1):
        assert first.held(LOGS_API, 1) == 3
        with pytest.raises(SlotsBusy, match="all 3 logs_api slots of counter 1"):
            async with second.hold(LOGS_API, 1, wait_s=0.3):
                pass
        async with second.hold(LOGS_API, 2, wait_s=0.3), second.hold(UPLOADS, 1, wait_s=0.3):
            pass
        # a caller cancelled while it waits takes nothing with it
        waiters = [asyncio.create_task(_enter(second, LOGS_API, 1)) for _ in range(5)]
        await asyncio.sleep(0.3)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert second.held(LOGS_API, 1) == 0
        # the first process is gone (its connection closes): Postgres frees its slots
        await first.close()
        async with second.hold(LOGS_API, 1, wait_s=0.3):
            assert second.held(LOGS_API, 1) == 1


async def _enter(slots: CounterSlots, kind: str, counter: int) -> None:
    async with slots.hold(kind, counter):
        await asyncio.sleep(60)


async def test_logs_api_calls_of_one_counter_never_exceed_the_limit_across_processes(
    start_sandbox, database_url, http: aiohttp.ClientSession
):
    # no quotas of its own: the sandbox only watches how many requests of each counter are in flight
    server = await start_sandbox(max_parallel=0, rps=0, management_rps=0, visits_per_day=50)
    server.app[FAULTS].add(r"/logrequests/evaluate", None, times=None, delay=0.2)
    base_url = str(server.make_url("")).rstrip("/")
    settings = Settings(metrika_api_url=base_url, logs_api_rps=0, http_retry_attempts=1, metrika_timeout_s=10)
    fields = list(VISIT_FIELDS[:3])

    async def calls(slots: list[CounterSlots | None]) -> dict[str, int]:
        server.app[REQUEST_LOG].clear()
        clients = [
            LogsApiClient(http, settings, TOKEN, counter, slots=slots[i % len(slots)])
            for i in range(8)
            for counter in (11, 12)
        ]
        await asyncio.gather(*(c.evaluate(DAY, "visits", fields) for c in clients))
        return server.app[REQUEST_LOG].in_flight_json()["in_flight_max"]

    # without the slots, the sandbox sees every call of a counter at once (the check can fail)
    assert await calls([None]) == {"11": 8, "12": 8}
    slots = [CounterSlots(database_url, {LOGS_API: 3}, wait_s=10) for _ in range(2)]
    try:
        assert await calls(list(slots)) == {"11": 3, "12": 3}
    finally:
        for one in slots:
            await one.close()


async def test_upload_calls_of_one_counter_never_exceed_the_limit_across_uploaders(
    start_sandbox, settings, http: aiohttp.ClientSession
):
    server = await start_sandbox(max_parallel=0, rps=0, management_rps=0)
    server.app[FAULTS].add(r"/goals$", None, times=None, delay=0.2)
    settings = override(settings, metrika_api_url=str(server.make_url("")).rstrip("/"))
    cipher = TokenCipher(settings.token_encryption_key)
    token_enc = cipher.encrypt(TOKEN)

    def uploader(wait_s: float) -> Deps:
        slots = CounterSlots(settings.database_url, {UPLOADS: 3}, wait_s=wait_s)
        return Deps(pool=None, session=http, cipher=cipher, settings=settings, slots=slots)  # type: ignore[arg-type]

    uploaders = [uploader(10), uploader(10)]

    async def call(deps: Deps) -> None:
        async with deps.counter_slot(21):
            await deps.client(token_enc, 21).goal_targets()

    try:
        await asyncio.gather(*(call(uploaders[i % 2]) for i in range(10)))
        assert server.app[REQUEST_LOG].in_flight_json()["in_flight_max"] == {"21": 3}
        # a counter whose slots stay busy: a retryable error the uploader retries durably
        holder, waiter = uploaders[0], uploader(0.2)
        try:
            async with holder.counter_slot(21), holder.counter_slot(21), holder.counter_slot(21):
                with pytest.raises(MetrikaError) as caught:
                    async with waiter.counter_slot(21):
                        pass
            assert caught.value.retryable and caught.value.error_type == COUNTER_BUSY
        finally:
            assert waiter.slots is not None
            await waiter.slots.close()
    finally:
        for deps in uploaders:
            assert deps.slots is not None
            await deps.slots.close()


async def _task(gateway, counter: int, token: str = TOKEN) -> uuid.UUID:
    resp = await gateway.post("/tasks", json={"date": DAY.isoformat(), "token": token, "counter": counter})
    assert resp.status in (200, 201, 202), await resp.text()
    return uuid.UUID((await resp.json())["task_id"])


async def _row(pool, task_id: uuid.UUID) -> Any:
    return await pool.fetchrow(
        "SELECT status, attempts, message, error, last_error FROM tasks WHERE id = $1", task_id
    )


async def test_broken_counters_queued_first_do_not_delay_a_healthy_counter(
    gateway, settings, sandbox, pool, run_service
):
    faults = sandbox.app[FAULTS]
    faults.add(r"/counter/777/", 429, times=None)  # always over quota
    faults.never_prepare([778, 779])  # days that never finish preparing
    # a token Yandex refuses for this counter
    faults.add(r"/counter/780/", 403, times=None, error_type="invalid_token", message="Invalid oauth_token")
    broken = {counter: await _task(gateway, counter) for counter in (777, 778, 779, 780)}
    await wait_for(lambda: outbox_drained(pool), what="the broken counters' tasks queued")
    healthy = await _task(gateway, HEALTHY)
    await wait_for(lambda: outbox_drained(pool), what="the healthy task queued")

    run_service(scorer_main, calm(settings))  # ONE scorer, its default concurrency

    async def completed():
        row = await _row(pool, healthy)
        assert row["status"] != "failed", row
        return row["status"] == "completed"

    await wait_for(completed, timeout=60, what="the healthy task completed")
    # ...while the broken ones are still where they were: retrying, or preparing
    over_quota = await _row(pool, broken[777])
    assert over_quota["status"] in ("pending", "running"), over_quota
    assert "429" in (over_quota["last_error"] or "") or over_quota["attempts"] >= 1
    for counter in (778, 779):
        preparing = await _row(pool, broken[counter])
        assert preparing["status"] == "running", preparing
        assert preparing["message"].startswith("prepare"), preparing
    refused = await wait_for(lambda: _row(pool, broken[780]), what="the refused task")
    assert refused["status"] == "failed" and "Invalid oauth_token" in refused["error"], refused
    # and the 429 counter does go on to durable retries, never failed
    await wait_for(
        lambda: _attempts_at_least(pool, broken[777], 2), timeout=30, what="the 429 counter retried"
    )
    assert (await _row(pool, broken[777]))["status"] in ("pending", "running")


async def _attempts_at_least(pool, task_id: uuid.UUID, n: int) -> bool:
    row = await _row(pool, task_id)
    return row["attempts"] >= n and "429" in (row["last_error"] or "")


async def test_a_counter_whose_slots_stay_busy_gives_its_task_back_and_another_counter_goes_on(
    gateway, settings, pool, run_service
):
    busy_counter = 5151
    other_process = CounterSlots(settings.database_url, {LOGS_API: 3}, wait_s=1)
    try:
        # another replica holds every Logs API slot of the counter
        held = [other_process.hold(LOGS_API, busy_counter) for _ in range(3)]
        for slot in held:
            await slot.__aenter__()
        waiting = await _task(gateway, busy_counter)
        healthy = await _task(gateway, HEALTHY)
        run_service(scorer_main, override(calm(settings), counter_slot_wait_s=0.5))

        async def given_back():
            row = await _row(pool, waiting)
            return row if row["attempts"] >= 1 and COUNTER_BUSY in (row["last_error"] or "") else None

        row = await wait_for(given_back, timeout=30, what="the busy counter's task given back")
        assert (
            row["status"] in ("pending", "running") and "LOGS_API_PARALLEL_PER_COUNTER" in row["last_error"]
        )
        await wait_for(
            lambda: _status_is(pool, healthy, "completed"), timeout=60, what="the other counter's task"
        )
        assert (await _row(pool, waiting))["status"] != "completed"
        # the slots come free: the task completes on a later attempt
        for slot in held:
            await slot.__aexit__(None, None, None)
        await wait_for(lambda: _status_is(pool, waiting, "completed"), timeout=60, what="the task completed")
    finally:
        await other_process.close()


async def _status_is(pool, task_id: uuid.UUID, status: str) -> bool:
    row = await _row(pool, task_id)
    assert row["status"] != "failed", row
    return row["status"] == status


async def test_a_day_still_being_prepared_gives_its_turn_back_and_keeps_its_log_requests(
    gateway, settings, sandbox, pool, run_service
):
    faults = sandbox.app[FAULTS]
    faults.never_prepare([778, 779])
    faults.add(r"/counter/777/", 429, times=None)
    broken = [await _task(gateway, counter) for counter in (778, 779, 777)]
    await wait_for(lambda: outbox_drained(pool), what="the broken counters' tasks queued")
    healthy = await _task(gateway, HEALTHY)
    # a scorer working on ONE task at a time: only giving turns back lets the healthy task through
    run_service(scorer_main, override(calm(settings), scorer_concurrency=1, logs_prepare_hold_s=0.5))

    await wait_for(lambda: _status_is(pool, healthy, "completed"), timeout=60, what="the healthy task")
    for task_id in broken[:2]:
        await wait_for(functools.partial(_attempts_at, pool, task_id, 2), timeout=30, what="a 2nd attempt")
        row = await _row(pool, task_id)
        assert row["status"] in ("pending", "running") and "still created" in row["last_error"], row
    store = sandbox.app[LOG_REQUESTS]
    for counter in (778, 779):
        # across its attempts the task polls the same two requests (visits, hits): none canceled or new
        assert [r.status for r in store.for_counter(counter)] == ["created", "created"]
    kept = "SELECT count(*) FROM log_requests WHERE task_id = $1 AND kept AND released_at IS NULL"
    assert [await pool.fetchval(kept, task_id) for task_id in broken[:2]] == [2, 2]

    # Yandex finishes preparing: the tasks complete on their kept requests, which are then cleaned
    faults.never_prepared.clear()
    for task_id in broken[:2]:
        done = functools.partial(_status_is, pool, task_id, "completed")
        await wait_for(done, timeout=60, what="a kept day scored")
    for counter in (778, 779):
        assert [r.status for r in store.for_counter(counter)] == ["cleaned_by_user"] * 2
    assert (await _row(pool, broken[2]))["status"] in ("pending", "running")


async def _attempts_at(pool, task_id: uuid.UUID, n: int) -> bool:
    return (await _row(pool, task_id))["attempts"] >= n


async def test_an_upload_whose_counter_slots_stay_busy_waits_durably_and_another_counter_goes_on(
    gateway, settings, sandbox, run_service
):
    busy, other = 7381, 7382
    sandbox.app[VISITORS].register(busy, ["901"])
    sandbox.app[VISITORS].register(other, ["902"])
    other_uploader = CounterSlots(settings.database_url, {UPLOADS: 3}, wait_s=1)
    held = [other_uploader.hold(UPLOADS, busy) for _ in range(3)]  # another replica uses them all
    try:
        for slot in held:
            await slot.__aenter__()
        run_service(uploader_main, override(settings, counter_slot_wait_s=0.3))
        waiting = await _single(gateway, "901", busy)
        fine = await _single(gateway, "902", other)
        assert (await _upload_final(gateway, fine))["status"] == "processed"

        async def deferred():
            body = await _upload_status(gateway, waiting)
            return body if body["attempts"] >= 1 and COUNTER_BUSY in (body["last_error"] or "") else None

        body = await wait_for(deferred, timeout=30, what="the busy counter's upload deferred")
        assert body["status"] == "pending" and body["next_attempt_at"] is not None, body
        assert not sandbox.app[CONVERSIONS].lines_for(busy)
        for slot in held:
            await slot.__aexit__(None, None, None)
        assert (await _upload_final(gateway, waiting))["status"] == "processed"
        assert [line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(busy)] == ["901"]
    finally:
        await other_uploader.close()


async def _single(gateway, client_id: str, counter: int) -> str:
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    body = {"client_id": client_id, "target": "purchase", "date_time": hour_ago, "counter": counter}
    resp = await gateway.post("/conversions/single", json={**body, "token": TOKEN})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["upload_id"])


async def _upload_status(gateway, upload_id: str) -> Any:
    resp = await gateway.get(f"/conversions/{upload_id}/status")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _upload_final(gateway, upload_id: str) -> Any:
    async def done():
        body = await _upload_status(gateway, upload_id)
        return body if body["status"] in ("processed", "error") else None

    return await wait_for(done, timeout=60, interval=0.05, what="the upload's final state")
