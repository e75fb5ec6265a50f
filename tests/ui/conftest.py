"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real gateway on real
Postgres and RabbitMQ; data put in through the API and shared.db, as the services would leave it."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, async_playwright

from shared.db import batches, bulk, dead_letters, tasks
from tests.conftest import API_KEY, completed_task

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".run" / "ui"))
COUNTER = 4242
VISITS = 120  # level-4+ visits of the completed task: more than one result page of 50


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is absent: run `bash scripts/browser.sh` (or `make test`, which runs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab; confirm() dialogs are accepted; an uncaught error in the page fails the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    crashes: list[str] = []
    page.on("pageerror", lambda exc: crashes.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    await context.close()
    assert not crashes, f"the page raised: {crashes}"


def require_routes(gateway: TestClient[Any, Any], *routes: str) -> None:
    """Skip, naming them, when this gateway lacks the listing routes (issue 11 item 2, built on the
    i11list branch): the tests then run as soon as both branches are merged."""
    have = {
        f"{route.method} {route.resource.canonical}"
        for route in gateway.server.app.router.routes()
        if route.resource is not None
    }
    missing = [route for route in routes if route not in have]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (issue 11 item 2: listings)")


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@dataclass
class Seeded:
    completed: uuid.UUID
    running: uuid.UUID
    failed: uuid.UUID
    upload_id: str
    webhook_id: str
    secret: str
    batch_id: str
    dead_letter_id: int
    client_id: str  # a visitor of the completed task, also in the webhook batch


async def seed(gateway: TestClient[Any, Any], pool: asyncpg.Pool) -> Seeded:
    """Tasks in three states, a bulk upload, a webhook with a batch holding a row refused at the door and
    a row Metrika failed for now, and two dead letters (one whose body cannot be replayed)."""
    yesterday = dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time(0, 5))
    completed = await completed_task(pool, VISITS, start=yesterday, step_s=697, counter=COUNTER)
    running, failed = uuid.uuid4(), uuid.uuid4()
    for task_id in (running, failed):
        await tasks.insert(pool, task_id, yesterday.date(), COUNTER, b"x")
        await tasks.claim(pool, task_id)
    await tasks.set_progress(pool, running, 45, "scoring 45,000 visits")
    await tasks.fail(pool, failed, "Metrika refused the token (403)")
    client_id = str(2**63 + 7)  # the completed task's 8th visitor

    resp = await gateway.post(
        "/conversions/bulk", json={"task_id": str(completed), "target": "4plus", "token": "t"}
    )
    assert resp.status == 200, await resp.text()
    upload_id = (await resp.json())["upload_id"]
    await bulk.expand(pool, uuid.UUID(upload_id))  # its rows, as the uploader makes them first

    resp = await gateway.post(
        "/webhook/offline-conversions",
        json={"name": "Shop CRM", "counter_id": COUNTER, "token": "t", "description": "orders"},
    )
    assert resp.status == 200, await resp.text()
    hook = await resp.json()
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(microsecond=0).isoformat()
    rows = [
        {"client_id": client_id, "target": "purchase", "date_time": when, "purchase_id": "order-1"},
        {"client_id": client_id, "target": "purchase", "date_time": "yesterday-ish"},
    ]
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}?partial=true",
        json={"conversions": rows},
        headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
    )
    assert resp.status == 200, await resp.text()
    batch_id = (await resp.json())["batch_id"]
    # what the uploader leaves when Metrika fails for now and its attempts run out
    await batches.fail_rows(
        pool, uuid.UUID(batch_id), [0], "Metrika answered 503 <b>Service unavailable</b>", retryable=True
    )
    await batches.set_status(pool, uuid.UUID(batch_id), "error", "Metrika kept failing")

    body = json.dumps({"task_id": str(uuid.uuid4())}).encode()
    dead_letter_id = await dead_letters.add(
        pool, "score_tasks", body, "Permanent: task does not exist <script>alert(1)</script>", {}
    )
    await dead_letters.add(pool, "conversion_uploads", b"\x00 not JSON", "unreadable message", {})
    return Seeded(
        completed,
        running,
        failed,
        upload_id,
        hook["webhook_id"],
        hook["secret"],
        batch_id,
        dead_letter_id,
        client_id,
    )


@pytest.fixture
async def seeded(gateway: TestClient[Any, Any], pool: asyncpg.Pool) -> Seeded:
    return await seed(gateway, pool)


@pytest.fixture
async def dashboard(page: Page, gateway: TestClient[Any, Any], seeded: Seeded) -> Page:
    """The dashboard on the seeded data, signed in with the API key."""
    await page.goto(str(gateway.make_url("/ui/")))
    await page.get_by_label("API key").fill(API_KEY)
    await page.get_by_role("button", name="Continue").click()
    await page.locator("h1", has_text="Scoring tasks").wait_for()
    return page
