"""`make screenshots`: the demo's stack and data (scripts.demo), plus a webhook batch with a refused row, a
message the scorer cannot read (a dead letter), a schedule with its first run, and a 3-day backfill with a
re-scored day, then the dashboard's pages in headless Chromium, saved to docs/screenshots/."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable
from typing import Any

import aio_pika
import aiohttp
from playwright.async_api import Page, async_playwright

from scripts.demo import API_KEY, COUNTER, ROOT, Stack, score_a_day, upload_conversions, wait_http
from shared import broker

OUT = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def more_data(session: aiohttp.ClientSession, gateway: str, stack: Stack, visitor: str) -> str:
    """A webhook batch sent with ?partial=true holding one row the gateway refuses, and a dead letter."""
    async with session.post(
        f"{gateway}/webhook/offline-conversions",
        json={"name": "Shop orders", "counter_id": COUNTER, "token": "sandbox-token", "description": "site"},
    ) as resp:
        hook = await resp.json()
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(microsecond=0).isoformat()
    rows = [
        {
            "client_id": visitor,
            "target": "purchase",
            "date_time": when,
            "price": 990,
            "purchase_id": "A-1001",
        },
        {"yclid": "8316391249123456789", "target": "purchase", "date_time": when, "purchase_id": "A-1002"},
        {"client_id": visitor, "target": "purchase", "date_time": "31.12.2025 18:00"},
    ]
    headers = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    url = f"{gateway}/webhook/offline-conversions/{hook['webhook_id']}?partial=true"
    async with session.post(url, json={"conversions": rows}, headers=headers) as resp:
        batch = await resp.json()
    connection = await aio_pika.connect(os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(broker.Topology(stack.prefix).exchange)
        message = aio_pika.Message(b'{"task_id": "not-a-task"}', content_type="application/json")
        await exchange.publish(message, routing_key=broker.SCORE_TASKS)
    for _ in range(60):  # until Metrika (the sandbox) has processed the batch's files
        async with session.get(f"{gateway}/conversions/{batch['batch_id']}/status") as resp:
            status = (await resp.json())["status"]
        print(f"batch {batch['batch_id']}: {status}")
        if status not in ("accepted", "pending", "uploaded", "processing"):
            break
        await asyncio.sleep(1)
    return f"#/webhooks/{hook['webhook_id']}/batches/{batch['batch_id']}"


async def wait_for(session: aiohttp.ClientSession, url: str, done: Callable[[Any], bool], what: str) -> Any:
    """GET `url` until `done(answer)`, for at most 3 minutes (then the page is shot as it is)."""
    body: Any = None
    for _ in range(360):
        async with session.get(url) as resp:
            body = await resp.json()
        if done(body):
            break
        await asyncio.sleep(0.5)
    else:
        print(f"{what}: not done in time, shot as it is")
    return body


async def schedule_and_backfill(session: aiohttp.ClientSession, gateway: str) -> dict[str, str]:
    """A schedule due at once (00:00 counter-local: yesterday is due) whose first run the scheduler makes; a
    backfill of the 3 days before yesterday, its first day re-scored. Their pages, by screenshot name."""
    body = {"counter": COUNTER, "token": "sandbox-token", "time": "00:00", "upload": {"target": "4plus"}}
    async with session.post(f"{gateway}/schedules", json=body) as resp:
        schedule = await resp.json()
    yesterday = dt.date.today() - dt.timedelta(days=1)
    body = {
        "counter": COUNTER,
        "token": "sandbox-token",
        "date_from": (yesterday - dt.timedelta(days=3)).isoformat(),
        "date_to": (yesterday - dt.timedelta(days=1)).isoformat(),
    }
    async with session.post(f"{gateway}/tasks", json=body) as resp:
        backfill = await resp.json()
    parent = backfill["task_id"]
    status_url = f"{gateway}/tasks/{parent}/status"
    await wait_for(session, status_url, lambda s: s["status"] in ("completed", "failed"), "backfill")
    print(f"backfill {parent}: done")
    first_day = backfill["days"][0]["task_id"]
    async with session.post(f"{gateway}/tasks/{first_day}/rescore") as resp:
        rescore = await resp.json()
    await wait_for(
        session,
        f"{gateway}/tasks/{rescore['task_id']}/status",
        lambda s: s["status"] in ("completed", "failed"),
        "re-score",
    )
    runs_url = f"{gateway}/schedules/{schedule['schedule_id']}/runs"
    await wait_for(session, runs_url, lambda page: bool(page["data"]), "the schedule's first run")
    return {
        "schedules": "#/schedules",
        "schedule": f"#/schedules/{schedule['schedule_id']}",
        "backfill": f"#/tasks/{parent}",
        "task-runs": f"#/tasks/{first_day}",
    }


async def shoot(gateway: str, pages: dict[str, str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page: Page = await browser.new_page(viewport={"width": 1280, "height": 860})
        await page.goto(f"{gateway}/ui/")
        await page.get_by_label("API key").fill(API_KEY)
        await page.get_by_role("button", name="Continue").click()
        for name, where in pages.items():
            await page.goto(f"{gateway}/ui/{where}")
            await page.wait_for_load_state("networkidle")
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(OUT / f"{name}.png"))
            print(f"docs/screenshots/{name}.png")
        await browser.close()


async def run(stack: Stack) -> None:
    gateway = f"http://127.0.0.1:{stack.gateway_port}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        stack.start("sandbox", "--port", str(stack.sandbox_port))
        await wait_http(session, f"http://127.0.0.1:{stack.sandbox_port}/sandbox/requests", "sandbox")
        stack.start("gateway")
        await wait_http(session, f"{gateway}/health", "gateway")
        stack.start("scorer")
        stack.start("uploader")
        stack.env["SCHEDULER_INTERVAL_S"] = "1"  # the schedule's first run without waiting 30 s
        stack.start("scheduler")
        outcome = await score_a_day(session, gateway, dt.date.today() - dt.timedelta(days=1))
        await upload_conversions(session, gateway, outcome)
        visitor = outcome["result"]["data"][0]["clientId"]
        batch_page = await more_data(session, gateway, stack, visitor)
        later_pages = await schedule_and_backfill(session, gateway)
        await shoot(
            gateway,
            {
                "tasks": "#/tasks",
                "task": f"#/tasks/{outcome['task_id']}",
                "uploads": "#/uploads",
                "webhooks": "#/webhooks",
                "webhook-batch": batch_page,
                "dead-letters": "#/dead-letters",
                "search": f"#/search?client_id={visitor}",
                **later_pages,
            },
        )


def main() -> None:
    stack = Stack()
    try:
        asyncio.run(run(stack))
    finally:
        stack.stop()
        asyncio.run(stack.drop_queues())


if __name__ == "__main__":
    main()
