"""The scheduler on real Postgres (and RabbitMQ where it publishes), its clock injected: a day later without
waiting a day. Days are counter-local; the counters' zones are injected too (no Management API needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import aio_pika
import pandas as pd

from scheduler.loop import Scheduler
from scheduler.main import main as scheduler_main
from scorer import results
from shared import broker, db, schedule_days
from shared.crypto import TokenCipher
from shared.db import bulk, schedules, tasks
from tests.conftest import AMQP_URL, outbox_drained, override, wait_for

MOSCOW = ZoneInfo("Europe/Moscow")
NOVOSIBIRSK = ZoneInfo("Asia/Novosibirsk")
# noon UTC today: 15:00 in Moscow, past the default 03:00 (visits near it are recent enough to upload)
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
YESTERDAY = schedule_days.yesterday(NOW, MOSCOW)
DAY = dt.timedelta(days=1)


def zones(mapping: dict[int, ZoneInfo] | None = None, broken: set[int] = frozenset()):  # type: ignore[assignment]
    async def zone_of(counter: int, token: str | None) -> ZoneInfo:
        if counter in broken:
            raise RuntimeError(f"counter {counter} is broken")
        return (mapping or {}).get(counter, MOSCOW)

    return zone_of


def scheduler(pool, settings, zone_of=None) -> Scheduler:
    return Scheduler(
        pool,
        TokenCipher(settings.token_encryption_key),
        zone_of or zones(),
        interval_s=0.05,
        max_age_days=settings.conversion_max_age_days,
    )


async def add_schedule(
    pool, settings, counter: int, *, first_day: dt.date = YESTERDAY, run_at=dt.time(3), target=None
) -> uuid.UUID:
    schedule_id = uuid.uuid4()
    token_enc = TokenCipher(settings.token_encryption_key).encrypt("sandbox-token")
    new = schedules.NewSchedule(schedule_id, counter, token_enc, run_at, target, first_day, None)
    assert await schedules.insert(pool, new) == schedule_id
    return schedule_id


async def runs(pool, counter: int | None = None) -> list:
    return list(
        await pool.fetch(
            "SELECT r.counter, r.day, r.kind, r.task_id, r.status, r.upload_id, r.note, t.day AS task_day"
            " FROM schedule_runs r JOIN tasks t ON t.id = r.task_id"
            " WHERE $1::bigint IS NULL OR r.counter = $1 ORDER BY r.created_at, r.day",
            counter,
        )
    )


async def complete(pool, task_id: uuid.UUID, visit_ids: range) -> None:
    """Finish a task as a scorer would, with level-4+ visits of ids `visit_ids` at noon yesterday."""
    start = dt.datetime.combine(YESTERDAY, dt.time(12))
    n = len(visit_ids)
    visits = pd.DataFrame(
        {
            "visitId": [str(2**63 + i) for i in visit_ids],
            "clientId": [str(2**62 + i) for i in visit_ids],
            "dateTime": [f"{start + dt.timedelta(seconds=i):%Y-%m-%d %H:%M:%S}" for i in visit_ids],
            "visitDuration": [100] * n,
            "score": [0.9] * n,
            "model_version": ["v1"] * n,
        }
    )
    assert await tasks.claim(pool, task_id)
    rows_csv = results.csv_chunks(results.visits_table(task_id, visits), None)
    async with pool.acquire() as conn:
        assert await tasks.store_result(conn, task_id, rows_csv, n, total_visits=n * 4, model_version="v1")


async def test_two_replicas_make_one_run_per_counter_and_day(settings, pool):
    counters = [101, 102, 103]
    for counter in counters:
        await add_schedule(pool, settings, counter, first_day=YESTERDAY - DAY)
    second = await db.create_pool(settings.database_url)
    try:
        replicas = [scheduler(pool, settings), scheduler(second, settings)]
        # several ticks of both at once, over three days
        for now in (NOW, NOW + dt.timedelta(minutes=1), NOW + DAY, NOW + DAY, NOW + 2 * DAY):
            await asyncio.gather(*(replica.tick(now) for replica in replicas))
    finally:
        await second.close()
    made = await runs(pool)
    keys = [(r["counter"], r["day"], r["kind"]) for r in made]
    assert len(keys) == len(set(keys))
    expected_days = [YESTERDAY - DAY + i * DAY for i in range(4)]
    for counter in counters:
        assert [r["day"] for r in made if r["counter"] == counter and r["kind"] == "score"] == expected_days
    # one task each, for its day, and one outbox message each
    assert await pool.fetchval("SELECT count(*) FROM tasks") == len(made) == 12
    assert all(r["task_day"] == r["day"] for r in made)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE routing_key = $1", broker.SCORE_TASKS) == 12


async def test_two_scheduler_services_publish_one_task_per_counter_and_day(settings, pool, run_service):
    """Two whole services (loop and outbox relay each), started together on one database."""
    for counter in (201, 202):
        await add_schedule(pool, settings, counter, first_day=YESTERDAY - 2 * DAY)
    fast = override(settings, scheduler_interval_s=0.05)
    for _ in range(2):
        run_service(lambda s, stop: scheduler_main(s, stop, clock=lambda: NOW, zone_of=zones()), fast)
    await wait_for(lambda: _count(pool, "SELECT count(*) FROM schedule_runs"), what="runs")
    await asyncio.sleep(1.0)  # many more ticks of both
    assert await _count(pool, "SELECT count(*) FROM schedule_runs") == 6
    assert await _count(pool, "SELECT count(DISTINCT (counter, day)) FROM tasks") == 6
    assert await _count(pool, "SELECT count(*) FROM tasks") == 6
    await wait_for(lambda: outbox_drained(pool), what="outbox published")
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.Topology(settings.queue_prefix).queue(broker.SCORE_TASKS))
        assert queue.declaration_result.message_count == 6
    finally:
        await connection.close()


async def _count(pool, query: str) -> int:
    return int(await pool.fetchval(query))


async def test_missed_days_are_caught_up_oldest_first(settings, pool):
    await add_schedule(pool, settings, 301, first_day=YESTERDAY - 2 * DAY)
    await scheduler(pool, settings).tick(NOW)
    made = await runs(pool, 301)
    assert [r["day"] for r in made] == [YESTERDAY - 2 * DAY, YESTERDAY - DAY, YESTERDAY]
    assert all(r["kind"] == "score" and r["status"] == "scoring" for r in made)


async def test_a_day_waits_for_its_time(settings, pool):
    await add_schedule(pool, settings, 302, run_at=dt.time(16, 0))  # 16:00 Moscow = 13:00 UTC
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    assert await runs(pool, 302) == []
    await replica.tick(NOW + dt.timedelta(hours=1))
    assert [r["day"] for r in await runs(pool, 302)] == [YESTERDAY]


async def test_pause_skips_days_and_resume_does_not_back_fill_them(settings, pool):
    schedule_id = await add_schedule(pool, settings, 401)
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    assert await schedules.update(pool, schedule_id, schedules.Change(paused=True))
    await replica.tick(NOW + DAY)
    await replica.tick(NOW + 2 * DAY)
    assert [r["day"] for r in await runs(pool, 401)] == [YESTERDAY]
    resumed = NOW + 3 * DAY
    change = schedules.Change(paused=False, resume_first_day=schedule_days.yesterday(resumed, MOSCOW))
    assert await schedules.update(pool, schedule_id, change)
    await replica.tick(resumed)
    # the days whose run was due while paused (YESTERDAY + 1 and + 2) are skipped
    assert [r["day"] for r in await runs(pool, 401)] == [YESTERDAY, YESTERDAY + 3 * DAY]


async def test_a_deleted_schedule_makes_no_more_runs(settings, pool):
    schedule_id = await add_schedule(pool, settings, 402)
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    assert await schedules.delete(pool, schedule_id)
    await replica.tick(NOW + DAY)
    await replica.tick(NOW + 5 * DAY)
    made = await runs(pool, 402)
    assert [r["day"] for r in made] == [YESTERDAY]  # its run stays
    # a new schedule for the counter from that day on does not score that day again
    await add_schedule(pool, settings, 402, first_day=YESTERDAY)
    await replica.tick(NOW + 5 * DAY)
    days = [r["day"] for r in await runs(pool, 402) if r["kind"] == "score"]
    assert days == [YESTERDAY + i * DAY for i in range(6)]


async def test_a_novosibirsk_counter_has_its_own_day_boundaries(settings, pool):
    # 20:30 UTC: 23:30 in Moscow, 03:30 the next day in Novosibirsk (past its 03:00)
    now = NOW.replace(hour=20, minute=30)
    moscow_yesterday = schedule_days.yesterday(now, MOSCOW)
    assert schedule_days.yesterday(now, NOVOSIBIRSK) == moscow_yesterday + DAY
    for counter in (501, 502):
        await add_schedule(pool, settings, counter, first_day=moscow_yesterday)
    await scheduler(pool, settings, zones({502: NOVOSIBIRSK})).tick(now)
    assert [r["day"] for r in await runs(pool, 501)] == [moscow_yesterday]
    assert [r["day"] for r in await runs(pool, 502)] == [moscow_yesterday, moscow_yesterday + DAY]


async def test_a_broken_counter_does_not_stop_the_others(settings, pool):
    for counter in (601, 602, 603):
        await add_schedule(pool, settings, counter)
    await scheduler(pool, settings, zones(broken={602})).tick(NOW)
    assert [r["counter"] for r in await runs(pool)] == [601, 603]


async def test_a_completed_run_is_uploaded_once(settings, pool):
    await add_schedule(pool, settings, 701, target="level4")
    second = await db.create_pool(settings.database_url)
    try:
        replicas = [scheduler(pool, settings), scheduler(second, settings)]
        await replicas[0].tick(NOW)
        (run,) = await runs(pool, 701)
        await complete(pool, run["task_id"], range(10))
        await asyncio.gather(*(replica.tick(NOW) for replica in replicas))
        await asyncio.gather(*(replica.tick(NOW) for replica in replicas))
    finally:
        await second.close()
    (run,) = await runs(pool, 701)
    assert run["status"] == "uploaded" and run["upload_id"] is not None, run
    uploads = await pool.fetch("SELECT id, task_id, source FROM batches")
    assert [(u["id"], u["task_id"], u["source"]) for u in uploads] == [
        (run["upload_id"], run["task_id"], "bulk")
    ]
    assert await bulk.expand(pool, run["upload_id"]) == 10  # as the uploader does when it takes it
    rows = await pool.fetch(
        "SELECT identifier, target FROM conversions WHERE batch_id = $1", run["upload_id"]
    )
    assert sorted(r["identifier"] for r in rows) == sorted(str(2**62 + i) for i in range(10))
    assert {r["target"] for r in rows} == {"level4"}


async def test_without_a_target_a_completed_run_only_completes(settings, pool):
    await add_schedule(pool, settings, 702)
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    (run,) = await runs(pool, 702)
    await complete(pool, run["task_id"], range(3))
    await replica.tick(NOW)
    (run,) = await runs(pool, 702)
    assert (run["status"], run["upload_id"]) == ("completed", None)
    assert await pool.fetchval("SELECT count(*) FROM batches") == 0


async def test_a_failed_task_fails_its_run(settings, pool):
    await add_schedule(pool, settings, 703, target="level4")
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    (run,) = await runs(pool, 703)
    await tasks.fail(pool, run["task_id"], "Invalid oauth_token")
    await replica.tick(NOW)
    (run,) = await runs(pool, 703)
    assert (run["status"], run["note"], run["upload_id"]) == ("failed", "Invalid oauth_token", None)
    # retried and completed later: the run follows
    assert await tasks.reset_failed(pool, run["task_id"])
    await complete(pool, run["task_id"], range(2))
    await replica.tick(NOW)
    (run,) = await runs(pool, 703)
    assert run["status"] == "uploaded" and run["upload_id"] is not None


async def test_a_day_is_rescored_once_at_d_plus_3(settings, pool):
    await add_schedule(pool, settings, 801, target="level4")
    second = await db.create_pool(settings.database_url)
    try:
        replicas = [scheduler(pool, settings), scheduler(second, settings)]
        await replicas[0].tick(NOW)
        (score,) = await runs(pool, 801)
        await complete(pool, score["task_id"], range(10))
        # D+3 at 03:00 Moscow is YESTERDAY + 3 days at 00:00 UTC: not before
        before = dt.datetime.combine(YESTERDAY + 3 * DAY, dt.time(0), tzinfo=dt.UTC) - dt.timedelta(seconds=1)
        await asyncio.gather(*(replica.tick(before) for replica in replicas))
        assert [r["kind"] for r in await runs(pool, 801) if r["day"] == YESTERDAY] == ["score"]
        for now in (before + dt.timedelta(seconds=1), before + dt.timedelta(hours=5), before + 2 * DAY):
            await asyncio.gather(*(replica.tick(now) for replica in replicas))
    finally:
        await second.close()
    made = [r for r in await runs(pool, 801) if r["day"] == YESTERDAY]
    assert [r["kind"] for r in made] == ["score", "rescore"]
    rescore = made[1]
    assert rescore["task_id"] != score["task_id"] and rescore["task_day"] == YESTERDAY
    assert rescore["status"] == "scoring"
    task = await tasks.get(pool, rescore["task_id"])
    assert task is not None and task["status"] == "pending" and task["counter"] == 801


async def test_a_rescored_day_uploads_only_new_visits(settings, pool):
    await add_schedule(pool, settings, 802, target="level4")
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    (score,) = await runs(pool, 802)
    await complete(pool, score["task_id"], range(10))
    await replica.tick(NOW)
    (score,) = await runs(pool, 802)
    assert await bulk.expand(pool, score["upload_id"]) == 10
    at_d3 = dt.datetime.combine(YESTERDAY + 3 * DAY, dt.time(0), tzinfo=dt.UTC)
    await replica.tick(at_d3)
    rescore = next(r for r in await runs(pool, 802) if r["kind"] == "rescore")
    # the re-score finds the same ten level-4+ visits and five more
    await complete(pool, rescore["task_id"], range(15))
    await replica.tick(at_d3)
    rescore = next(r for r in await runs(pool, 802) if r["kind"] == "rescore")
    assert rescore["status"] == "uploaded", rescore
    assert await bulk.expand(pool, rescore["upload_id"]) == 5
    rows = await pool.fetch("SELECT identifier FROM conversions WHERE batch_id = $1", rescore["upload_id"])
    assert sorted(r["identifier"] for r in rows) == sorted(str(2**62 + i) for i in range(10, 15))
    # the task serves its latest run
    assert (await tasks.served(pool, score["task_id"]))["id"] == rescore["task_id"]


async def test_a_rescore_with_nothing_new_uploads_nothing(settings, pool):
    await add_schedule(pool, settings, 803, target="level4")
    replica = scheduler(pool, settings)
    await replica.tick(NOW)
    (score,) = await runs(pool, 803)
    await complete(pool, score["task_id"], range(10))
    await replica.tick(NOW)
    (score,) = await runs(pool, 803)
    await bulk.expand(pool, score["upload_id"])
    at_d3 = dt.datetime.combine(YESTERDAY + 3 * DAY, dt.time(0), tzinfo=dt.UTC)
    await replica.tick(at_d3)
    rescore = next(r for r in await runs(pool, 803) if r["kind"] == "rescore")
    await complete(pool, rescore["task_id"], range(8))  # two sessions fell below level 4: nothing new
    await replica.tick(at_d3)
    rescore = next(r for r in await runs(pool, 803) if r["kind"] == "rescore")
    assert (rescore["status"], rescore["upload_id"]) == ("completed", None)
    assert rescore["note"] == "nothing new to upload: of 8 level-4+ visits, 8 were sent before, 0 are too old"
    assert await pool.fetchval("SELECT count(*) FROM batches") == 1


async def test_an_upload_that_fails_waits_for_the_next_tick(settings, pool):
    await add_schedule(pool, settings, 804, target="level4")
    await add_schedule(pool, settings, 805, target="level4")
    broken: set[int] = set()
    replica = scheduler(pool, settings, zones(broken=broken))
    await replica.tick(NOW)
    for run in await runs(pool):
        await complete(pool, run["task_id"], range(3))
    broken.add(804)  # its zone cannot be had now: no upload can be made of its run
    assert await replica.follow_up() == 2  # each looked at once in a tick
    failing, healthy = await runs(pool, 804), await runs(pool, 805)
    assert (failing[0]["status"], failing[0]["upload_id"]) == ("scoring", None)
    assert failing[0]["note"] == "upload not created yet: counter 804 is broken"
    assert healthy[0]["status"] == "uploaded"
    broken.clear()
    await replica.tick(NOW)
    (run,) = await runs(pool, 804)
    assert run["status"] == "uploaded" and run["upload_id"] is not None
    assert await pool.fetchval("SELECT count(*) FROM batches") == 2
