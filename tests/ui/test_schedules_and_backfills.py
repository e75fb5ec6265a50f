"""The dashboard's schedules (created, paused, resumed, re-timed, deleted; their runs as the scheduler makes
them) and a backfill's days, a day's re-score runs and the results of one run, in headless Chromium."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from playwright.async_api import Page, expect

from shared.db import tasks
from tests.gateway.test_backfills_and_runs import finish, visits_of
from tests.scheduler.test_scheduler import NOVOSIBIRSK, scheduler, zones
from tests.ui.conftest import COUNTER, shot

ZONED_COUNTER = 54_000_123  # the sandbox's counters 54xxxxxx are in Asia/Novosibirsk
TOKEN = "sandbox-token"


async def test_a_schedule_is_created_paused_resumed_and_shows_its_runs(
    dashboard: Page, gateway, pool, settings
) -> None:
    page = dashboard
    await page.get_by_role("link", name="Schedules", exact=True).click()
    await expect(page.locator("main")).to_contain_text("No schedules yet")
    token = page.get_by_label("Metrika OAuth token")
    await expect(token).to_have_attribute("type", "password")
    await page.get_by_label("Counter", exact=True).fill(str(ZONED_COUNTER))
    await token.fill(TOKEN)
    await page.get_by_label("Time (counter-local)").fill("00:00")
    await page.get_by_label("Upload as goal (optional)").fill("level4")
    await page.get_by_role("button", name="Create schedule").click()

    row = page.locator("main tbody tr", has_text=str(ZONED_COUNTER))
    await expect(row).to_contain_text("00:00 Asia/Novosibirsk")  # the counter's own zone, from Metrika
    await expect(row).to_contain_text("level4")
    await expect(row).to_contain_text("active")
    await expect(page.locator("#notice")).to_contain_text("every day at 00:00 Asia/Novosibirsk")
    await expect(token).to_have_value("")  # the token is never shown again
    assert TOKEN not in await page.content()
    listed = (await (await gateway.get("/schedules")).json())["data"]
    assert [(s["counter"], s["time"], s["timezone"]) for s in listed] == [
        (ZONED_COUNTER, "00:00", "Asia/Novosibirsk")
    ]
    schedule_id = listed[0]["schedule_id"]
    await shot(page, "schedules")

    # the API's refusal in its own words: one schedule per counter
    await page.get_by_label("Counter", exact=True).fill(str(ZONED_COUNTER))
    await token.fill(TOKEN)
    await page.get_by_role("button", name="Create schedule").click()
    await expect(page.locator("main .message.error")).to_contain_text(
        f"Counter {ZONED_COUNTER} has a schedule already: {schedule_id}"
    )
    assert TOKEN not in await page.content()

    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_contain_text("paused")
    assert (await (await gateway.get(f"/schedules/{schedule_id}")).json())["paused"] is True
    await row.get_by_role("button", name="Resume").click()
    await expect(row).to_contain_text("active")
    assert (await (await gateway.get(f"/schedules/{schedule_id}")).json())["paused"] is False

    # its page: no run yet, then the run the scheduler makes appears, and how it ended
    await row.get_by_role("link", name=str(ZONED_COUNTER)).click()
    await expect(page.locator("dl.facts")).to_contain_text("Asia/Novosibirsk")
    await expect(page.locator("main")).to_contain_text("No run yet")
    replica = scheduler(pool, settings, zones({ZONED_COUNTER: NOVOSIBIRSK}))
    now = dt.datetime.now(dt.UTC)
    await replica.tick(now)
    runs = page.locator("main tbody tr")
    await expect(runs).to_have_count(1, timeout=8000)
    await expect(runs).to_contain_text("scoring")
    task_id = await pool.fetchval("SELECT task_id FROM schedule_runs WHERE counter = $1", ZONED_COUNTER)
    await expect(runs.get_by_role("link", name=str(task_id)[:8])).to_have_attribute(
        "href", f"#/tasks/{task_id}"
    )
    await tasks.fail(pool, task_id, "Invalid oauth_token")
    await replica.tick(now)
    await expect(runs).to_contain_text("failed", timeout=8000)
    await expect(runs).to_contain_text("Invalid oauth_token")
    await expect(runs).to_contain_text("score")
    await shot(page, "schedule")

    await page.get_by_label("Time (counter-local)").fill("05:30")
    await page.get_by_role("button", name="Change time").click()
    await expect(page.locator("dl.facts")).to_contain_text("05:30 Asia/Novosibirsk")
    assert (await (await gateway.get(f"/schedules/{schedule_id}")).json())["time"] == "05:30"

    await page.get_by_role("button", name="Delete").click()  # confirm() is accepted
    await expect(page).to_have_url(re.compile(r"#/schedules$"))
    await expect(page.locator("main")).to_contain_text("No schedules yet")
    assert (await gateway.get(f"/schedules/{schedule_id}")).status == 404


async def test_a_backfill_shows_its_days_and_a_day_its_runs(dashboard: Page, gateway, pool) -> None:
    page = dashboard
    first = dt.date.today() - dt.timedelta(days=4)
    last = first + dt.timedelta(days=2)
    resp = await gateway.post(
        "/tasks", json={"token": "t", "counter": COUNTER, "date_from": str(first), "date_to": str(last)}
    )
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    parent = created["task_id"]
    day1, day2, day3 = (uuid.UUID(day["task_id"]) for day in created["days"])
    await finish(pool, day1, visits_of(first, list(range(3))))
    await tasks.claim(pool, day2)
    await tasks.set_progress(pool, day2, 40, "scoring")

    await page.goto(str(gateway.make_url(f"/ui/#/tasks/{parent}")))
    facts = page.locator("dl.facts")
    await expect(facts).to_contain_text(f"{first} – {last} (3 days)")
    await expect(facts.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "47")  # (100+40+0)/3
    days = page.locator(".card", has=page.get_by_role("heading", name="Days")).locator("tbody tr")
    await expect(days).to_have_count(3)
    await expect(days.nth(0)).to_contain_text("completed")
    await expect(days.nth(1).get_by_role("progressbar")).to_have_attribute("aria-valuenow", "40")
    await expect(days.nth(1)).to_contain_text("running")
    await expect(days.nth(2)).to_contain_text("pending")
    await shot(page, "backfill")

    # a completed day: re-scored from its page; its runs, and the results of each run
    await days.nth(0).get_by_role("link", name=str(day1)[:8]).click()
    await expect(facts).to_contain_text("Run1 of 1")
    await expect(page.locator(".pager .range")).to_have_text("1–3 of 3")
    await page.get_by_role("button", name="Re-score").click()
    await expect(page.locator("#notice")).to_contain_text(f"Run 2 of {first} is pending")
    runs = page.locator(".card", has=page.get_by_role("heading", name="Runs of this day")).locator("tbody tr")
    await expect(runs).to_have_count(2)
    await expect(runs.nth(1)).to_contain_text("pending")
    run2 = await pool.fetchval("SELECT id FROM tasks WHERE rescore_of = $1", day1)
    await finish(pool, run2, visits_of(first, list(range(5))))
    await expect(runs.nth(1)).to_contain_text("completed", timeout=8000)
    await expect(facts).to_contain_text("results serve run 2")
    await expect(page.get_by_role("heading", name="Level-4+ visits of run 2")).to_be_visible()
    await expect(page.locator(".pager .range")).to_have_text("1–5 of 5")
    await shot(page, "task-runs")

    await runs.nth(0).get_by_role("link", name="results").click()
    await expect(page).to_have_url(re.compile(rf"#/tasks/{day1}\?run=1$"))
    await expect(page.get_by_role("heading", name="Level-4+ visits of run 1")).to_be_visible()
    await expect(page.locator(".pager .range")).to_have_text("1–3 of 3")

    # the list shows the backfill as one row with its range, beside its days
    await page.get_by_role("link", name="← all tasks").click()
    backfill = page.locator("main tbody tr", has_text=str(parent)[:8])
    await expect(backfill).to_contain_text(f"{first} – {last} backfill")
    await expect(page.locator("main tbody tr", has_text=str(run2)[:8])).to_contain_text(f"{first} run 2")

    # once every day has ended, the backfill's result: its days' served runs (day 1's run 2), day by day
    await finish(pool, day2, visits_of(first + dt.timedelta(days=1), list(range(2))))
    await finish(pool, day3, visits_of(last, list(range(1))))
    await backfill.get_by_role("link", name=str(parent)[:8]).click()
    await expect(facts).to_contain_text("completed")
    await expect(page.locator(".pager .range")).to_have_text("1–8 of 8")  # 5 + 2 + 1
    heading = page.get_by_role("heading", name="Level-4+ visits")
    results = page.locator(".card", has=heading).locator("tbody tr")
    await expect(results.first).to_contain_text(str(first))
    await expect(results.last).to_contain_text(str(last))
