"""The scheduler's GET /metrics (README "Monitoring"), scraped from a whole service on real Postgres and
RabbitMQ: the numbers move as runs are claimed and followed up, and the gauges follow the database."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from scheduler.main import main as scheduler_main
from shared.db import schedules, tasks
from tests.conftest import override, wait_for
from tests.faults.procs import free_port
from tests.scheduler.test_scheduler import NOW, add_schedule, complete, runs, scheduler, zones

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _now(name: str, **labels: str) -> float:
    """The value in this process's registry (the service under test runs in it)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


RUNS = "metrika_score_scheduler_runs_total"
FOLLOW_UPS = "metrika_score_scheduler_follow_ups_total"
TICKS = "metrika_score_scheduler_tick_seconds_count"
LAST_TICK = "metrika_score_scheduler_last_tick_timestamp_seconds"
SCHEDULES = "metrika_score_scheduler_schedules"
WAITING = "metrika_score_scheduler_runs_waiting"
ZONE_FAILURES = "metrika_score_counter_zone_failures_total"


async def test_the_scheduler_metrics_move_after_a_tick(settings, pool, run_service, http):
    for counter, target in ((801, None), (802, "level4"), (803, None)):
        await add_schedule(pool, settings, counter, target=target)
    paused = await add_schedule(pool, settings, 804)
    assert await schedules.update(pool, paused, schedules.Change(paused=True))
    before = {kind: _now(RUNS, kind=kind) for kind in ("score", "rescore")} | {
        outcome: _now(FOLLOW_UPS, outcome=outcome) for outcome in ("completed", "uploaded", "failed")
    }
    ticks_before, started = _now(TICKS), time.time()
    port = free_port()
    fast = override(settings, scheduler_interval_s=0.05, metrics_port=port)
    run_service(lambda s, stop: scheduler_main(s, stop, clock=lambda: NOW, zone_of=zones()), fast)

    async def scrape_when(ready: Any) -> Samples:
        async def scraped() -> Samples | None:
            try:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    samples = _samples(await resp.text())
            except aiohttp.ClientConnectorError:  # still starting
                return None
            return samples if ready(samples) else None

        return await wait_for(scraped, timeout=30, what="the scheduler's metrics")

    # a tick with three due schedules: three score runs claimed, all waiting for their task
    samples = await scrape_when(lambda s: _value(s, WAITING, kind="score") == 3)
    assert _value(samples, RUNS, kind="score") == before["score"] + 3
    assert _value(samples, RUNS, kind="rescore") == before["rescore"]
    assert _value(samples, SCHEDULES, state="active") == 3
    assert _value(samples, SCHEDULES, state="paused") == 1
    assert _value(samples, TICKS) > ticks_before
    assert _value(samples, LAST_TICK) >= started

    made = {r["counter"]: r["task_id"] for r in await runs(pool)}
    await complete(pool, made[801], range(3))
    await complete(pool, made[802], range(3))
    await tasks.fail(pool, made[803], "Invalid oauth_token")
    samples = await scrape_when(lambda s: _value(s, WAITING, kind="score") == 0)
    assert _value(samples, FOLLOW_UPS, outcome="completed") == before["completed"] + 1
    assert _value(samples, FOLLOW_UPS, outcome="uploaded") == before["uploaded"] + 1
    assert _value(samples, FOLLOW_UPS, outcome="failed") == before["failed"] + 1
    last = _value(samples, LAST_TICK)
    later = await scrape_when(lambda s: _value(s, LAST_TICK) > last)  # it keeps moving while ticks work
    assert _value(later, RUNS, kind="score") == before["score"] + 3  # one run per counter and day


async def test_a_zone_that_cannot_be_looked_up_is_counted(settings, pool):
    for counter in (811, 812):
        await add_schedule(pool, settings, counter)
    skipped, nothing_new = _now(ZONE_FAILURES, outcome="skipped"), _now(FOLLOW_UPS, outcome="nothing_new")
    replica = scheduler(pool, settings, zones(broken={812}))
    await replica.tick(NOW)
    assert _now(ZONE_FAILURES, outcome="skipped") == skipped + 1
    assert [r["counter"] for r in await runs(pool)] == [811]
    # a completed run whose visits were all sent before: nothing new to upload
    schedule_id = await schedules.of_counter(pool, 811)
    assert schedule_id is not None
    change = schedules.Change(upload_given=True, upload_target="level4")
    assert await schedules.update(pool, schedule_id, change)
    (run,) = await runs(pool, 811)
    await complete(pool, run["task_id"], range(0))
    await replica.tick(NOW)
    assert _now(FOLLOW_UPS, outcome="nothing_new") == nothing_new + 1
