"""Each dashboard page loaded on real data in headless Chromium; actions clicked and their effect checked
through the API. Screenshots go to .run/ui/ (UI_SCREENSHOTS)."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from shared.db import tasks
from tests.ui.conftest import VISITS, Seeded, require_routes, shot


async def test_the_page_asks_for_the_key_and_says_when_it_is_refused(page: Page, gateway) -> None:
    resp = await gateway.get("/ui/", headers={"Authorization": ""})
    assert resp.status == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    script = await gateway.get("/ui/app.js", headers={"Authorization": ""})
    assert script.status == 200 and script.content_type in ("text/javascript", "application/javascript")
    # only the files of gateway/ui/ are served, whatever the name asks for
    for name in ("nothing.js", "..%2Fui.py", "%2E%2E%2Fapp.py"):
        assert (await gateway.get(f"/ui/{name}")).status == 404, name

    await page.goto(str(gateway.make_url("/ui")))  # redirected to /ui/
    await page.get_by_label("API key").fill("wrong-key")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert").last).to_contain_text("The API key was refused (Invalid API key)")
    await shot(page, "sign-in-refused")


async def test_tasks_show_progress_and_a_task_its_charts_and_result(
    dashboard: Page, gateway, pool, seeded: Seeded
) -> None:
    require_routes(gateway, "GET /tasks", "GET /tasks/{task_id}/summary")  # and ?client_id= on /result
    page = dashboard
    rows = page.locator("main tbody tr")
    await expect(rows).to_have_count(3)
    running = rows.filter(has_text=str(seeded.running)[:8])
    await expect(running.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "45")
    await expect(running).to_contain_text("scoring 45,000 visits")
    await expect(rows.filter(has_text="failed").get_by_role("button", name="Retry")).to_be_visible()

    # live progress: the list follows the running task without a reload
    await tasks.set_progress(pool, seeded.running, 80, "storing the result")
    await expect(running.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "80", timeout=8000)
    await shot(page, "tasks")

    await page.get_by_role("link", name=str(seeded.completed)[:8]).click()
    await expect(page.locator("dl.facts")).to_contain_text("completed")
    await expect(page.locator("svg.chart")).to_have_count(3)
    await expect(page.locator("figcaption").first).to_contain_text(f"{VISITS} of {VISITS * 4} visits")
    assert await page.locator("svg.chart rect.bar").count() == 24 + 10
    await expect(page.locator(".pager .range")).to_have_text(f"1–50 of {VISITS}")
    await page.get_by_role("button", name="Next →").click()
    await expect(page.locator(".pager .range")).to_have_text(f"51–100 of {VISITS}")
    await shot(page, "task")

    await page.get_by_label("Find a visitor").fill(seeded.client_id)
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator(".pager .range")).to_have_text("1–1 of 1")
    await expect(page.locator("main tbody tr")).to_contain_text(seeded.client_id)


async def test_a_failed_task_is_retried_from_its_page(dashboard: Page, gateway, seeded: Seeded) -> None:
    page = dashboard
    await page.goto(str(gateway.make_url(f"/ui/#/tasks/{seeded.failed}")))
    await expect(page.locator("dl.facts")).to_contain_text("Metrika refused the token (403)")
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("#notice")).to_contain_text("is pending again")
    status = await (await gateway.get(f"/tasks/{seeded.failed}/status")).json()
    assert status["status"] == "pending"


async def test_webhooks_are_created_rotated_and_deactivated(dashboard: Page, gateway, seeded: Seeded) -> None:
    page = dashboard
    await page.get_by_role("link", name="Webhooks").click()
    shop = page.locator("main tbody tr", has_text="Shop CRM")
    await expect(shop).to_contain_text("active")

    await shop.get_by_role("button", name="Rotate secret").click()
    new_secret = (await page.locator(".secret-value").text_content()) or ""
    assert new_secret and new_secret != seeded.secret
    status_url = f"/webhook/offline-conversions/{seeded.webhook_id}/status?batch_id={seeded.batch_id}"
    old = await gateway.get(status_url, headers={"X-Webhook-Secret": seeded.secret, "Authorization": ""})
    assert old.status == 403
    new = await gateway.get(status_url, headers={"X-Webhook-Secret": new_secret, "Authorization": ""})
    assert new.status == 200
    await shot(page, "webhooks-secret")
    await page.get_by_role("button", name="I have copied it").click()
    await expect(page.locator(".secret-value")).to_have_count(0)

    await shop.get_by_role("button", name="Deactivate").click()
    await expect(shop).to_contain_text("inactive")
    hooks = await (await gateway.get("/webhook/offline-conversions")).json()
    assert [h["is_active"] for h in hooks if h["webhook_id"] == seeded.webhook_id] == [False]

    await page.get_by_label("Name").fill("Second <img src=x onerror=alert(1)>")
    await page.get_by_label("Counter").fill("777")
    await page.get_by_label("Metrika OAuth token").fill("token-2")
    await page.get_by_role("button", name="Create webhook").click()
    await expect(page.locator(".secret-value")).to_be_visible()
    await expect(page.locator("main tbody tr")).to_have_count(2)
    await expect(page.locator("main img")).to_have_count(0)  # the name is shown as text
    await expect(page.locator("main tbody")).to_contain_text("Second <img src=x onerror=alert(1)>")
    hooks = await (await gateway.get("/webhook/offline-conversions")).json()
    assert {h["counter_id"] for h in hooks} == {4242, 777}


async def test_a_webhook_batch_shows_its_row_errors_and_is_retried(
    dashboard: Page, gateway, seeded: Seeded
) -> None:
    """The batch page uses GET /conversions/{id}/status; the list of batches is a listing."""
    require_routes(gateway, "GET /webhook/offline-conversions/{webhook_id}/batches")
    page = dashboard
    await page.goto(str(gateway.make_url(f"/ui/#/webhooks/{seeded.webhook_id}")))
    batch_row = page.locator("main tbody tr", has_text=seeded.batch_id[:8])
    await expect(batch_row).to_contain_text("error")
    await batch_row.get_by_role("link").click()

    errors = page.locator("main tbody tr")
    await expect(errors).to_have_count(3)  # the batch's error, then one per failed row
    await expect(errors.nth(0)).to_contain_text("Metrika kept failing")
    await expect(errors.filter(has_text="Metrika answered 503 <b>Service unavailable</b>")).to_contain_text(
        "0"
    )
    await expect(errors.filter(has_text="date_time")).to_contain_text("1")
    await expect(page.locator("main b")).to_have_count(0)
    await shot(page, "webhook-batch")

    await page.get_by_role("button", name="Retry failed rows").click()
    await expect(page.locator("#notice")).to_contain_text("Sending 1 failed row(s) again")
    status = await (await gateway.get(f"/conversions/{seeded.batch_id}/status")).json()
    assert status["status"] == "pending"
    await expect(page.locator("dl.facts")).to_contain_text("pending")


async def test_dead_letters_show_their_reasons_and_are_replayed(
    dashboard: Page, gateway, seeded: Seeded
) -> None:
    page = dashboard
    await page.get_by_role("link", name="Dead letters").click()
    letter = page.locator("main tbody tr", has_text="Permanent: task does not exist")
    await expect(letter).to_contain_text("Permanent: task does not exist <script>alert(1)</script>")
    await letter.get_by_role("button", name="Replay").click()
    await expect(page.locator("#notice")).to_contain_text(
        f"Dead letter #{seeded.dead_letter_id} was sent again"
    )
    listing = await (await gateway.get("/dead-letters?replayed=true")).json()
    assert [d["id"] for d in listing["data"]] == [seeded.dead_letter_id]
    await expect(letter).to_contain_text("replayed")
    await shot(page, "dead-letters")
    # a 4xx is shown in words: this one cannot be replayed
    unreadable = page.locator("main tbody tr", has_text="unreadable message")
    await unreadable.get_by_role("button", name="Replay").click()
    await expect(page.locator("#notice")).to_contain_text(
        "Not now: The dead letter's body is not a JSON object"
    )


async def test_uploads_and_search(dashboard: Page, gateway, seeded: Seeded) -> None:
    require_routes(gateway, "GET /conversions", "GET /search")
    page = dashboard
    await page.get_by_role("link", name="Uploads", exact=True).click()
    upload = page.locator("main tbody tr", has_text=seeded.upload_id[:8])
    await expect(upload).to_contain_text(str(seeded.completed)[:8])
    await upload.get_by_role("link", name=seeded.upload_id[:8]).click()
    await expect(page.locator("dl.facts")).to_contain_text(f"of {VISITS}")
    await shot(page, "upload")

    await page.get_by_placeholder("Find a ClientID").fill(seeded.client_id)
    await page.get_by_placeholder("Find a ClientID").press("Enter")
    await expect(page).to_have_url(re.compile(r"#/search\?client_id="))
    found = page.locator("main tbody tr")
    await expect(found.filter(has_text="order-1")).to_have_count(1)
    await shot(page, "search")
