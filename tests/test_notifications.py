"""Notifications on real parts: a task or a webhook batch reaches its final state, and a real aiohttp
receiver gets the signed summary once; retries, the horizon, refused targets and bad callback URLs."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import socket
import time
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from scorer.main import main as scorer_main
from shared import notify
from shared.db import tasks
from shared.settings import DEVELOPMENT_NOTIFY_KEY
from tests.conftest import override, wait_for
from tests.gateway.test_backfills_and_runs import finish, visits_of
from uploader.main import main as uploader_main

DAY = dt.date.today() - dt.timedelta(days=2)
COUNTER = 4343
KEY = b"test-notify-key"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def verify(body: bytes, header: str, key: bytes, tolerance: int = 300) -> bool:
    """The README's verification snippet, as a receiver would use it."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(key, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(parts["t"])) <= tolerance
    return fresh and hmac.compare_digest(expected, parts["v1"])


class Receiver:
    """A real HTTP receiver on loopback; answers each POST with the next of `answers` (then 200)."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/hooks/metrika?source=test"))

    async def _handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        status = self.answers.pop(0) if self.answers else 200
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "http://198.51.100.7/elsewhere"})
        return web.Response(status=status, text="nope" if status >= 400 else "ok")

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]


@pytest.fixture
async def receiver():
    made: list[Receiver] = []

    async def make(*answers: int) -> tuple[Receiver, str]:
        r = Receiver(*answers)
        made.append(r)
        return r, await r.start()

    yield make
    for r in made:
        if r.server is not None:
            await r.server.close()


def notifying(settings, **changes):
    quick = {
        "notify_signing_key": KEY.decode(),
        "notify_allow_private": True,  # the receiver is on loopback
        "notify_interval_s": 0.05,
        "notify_retry_base_s": 0.05,
        "notify_retry_max_s": 0.1,
        "notify_timeout_s": 2,
    }
    return override(settings, **{**quick, **changes})


async def _failed_task(gateway, pool, url: str) -> str:
    """A task that names `url` and has failed (its final state written by the query the scorer uses)."""
    body = {"date": DAY.isoformat(), "counter": COUNTER, "token": "t", "callback_url": url}
    resp = await gateway.post("/tasks", json=body)
    assert resp.status == 200, await resp.text()
    task_id = (await resp.json())["task_id"]
    await tasks.fail(pool, uuid.UUID(task_id), "Logs API error: the counter has no such day")
    return task_id


async def _notification(gateway, task_id: str) -> dict[str, Any]:
    return (await (await gateway.get(f"/tasks/{task_id}/status")).json())["notification"]


async def test_a_finished_task_is_delivered_once_signed(gateway, settings, run_service, receiver):
    got, url = await receiver()
    resp = await gateway.post(
        "/tasks",
        json={"date": DAY.isoformat(), "token": "sandbox-token", "counter": COUNTER, "callback_url": url},
    )
    task_id = (await resp.json())["task_id"]
    assert (await _notification(gateway, task_id)) == {
        "url": url, "status": "pending", "attempts": 0, "last_error": None, "delivered_at": None,
    }  # fmt: skip
    run_service(scorer_main, notifying(settings, logs_poll_initial_s=0.4, http_retry_max_s=0.5))

    async def delivered():
        note = await _notification(gateway, task_id)
        return note if note["status"] == "delivered" else None

    note = await wait_for(delivered, timeout=90, interval=0.1, what="task notification delivered")
    status = await (await gateway.get(f"/tasks/{task_id}/status")).json()
    assert status["status"] == "completed"
    assert note["attempts"] == 1 and note["last_error"] is None and note["url"] == url
    await asyncio.sleep(0.5)  # several more sender passes: nothing is sent again
    assert len(got.got) == 1
    headers, raw = got.got[0]
    assert verify(raw, headers[notify.SIGNATURE_HEADER], KEY)
    assert not verify(raw, headers[notify.SIGNATURE_HEADER], b"another key")
    assert not verify(raw + b" ", headers[notify.SIGNATURE_HEADER], KEY)
    assert headers["Content-Type"] == "application/json" and headers[notify.EVENT_HEADER] == "task.finished"
    body = json.loads(raw)
    assert list(body)[:7] == ["event", "id", "counter", "status", "counts", "failed_rows", "finished_at"]
    level4 = (await (await gateway.get(f"/tasks/{task_id}/result", params={"limit": 1})).json())["pagination"]
    assert body["event"] == "task.finished" and body["id"] == task_id and body["counter"] == COUNTER
    assert body["status"] == "completed" and body["failed_rows"] == [] and body["error"] is None
    assert body["counts"] == {"total_visits": status["total_visits"], "level4_visits": level4["total"]}
    assert dt.datetime.fromisoformat(body["finished_at"]) == dt.datetime.fromisoformat(status["finished_at"])
    assert "sandbox-token" not in raw.decode() and KEY.decode() not in raw.decode()


async def test_a_finished_webhook_batch_reports_counts_and_failing_rows(
    gateway, settings, sandbox, run_service, receiver
):
    from sandbox.app import VISITORS

    got, url = await receiver()
    resp = await gateway.post(
        "/webhook/offline-conversions",
        json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token", "callback_url": url},
    )
    hook = await resp.json()
    rows = [
        {
            "client_id": str(10**18 + i),
            "target": "purchase",
            "date_time": (NOW - dt.timedelta(hours=2)).isoformat(),
        }
        for i in range(3)
    ]
    rows[1]["target"] = "no_such_goal"
    sandbox.app[VISITORS].register(COUNTER, [rows[0]["client_id"], rows[2]["client_id"]])
    secret = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}", json={"conversions": rows}, headers=secret
    )
    batch_id = (await resp.json())["batch_id"]
    run_service(uploader_main, notifying(settings))

    async def delivered():
        resp = await gateway.get(
            f"/webhook/offline-conversions/{hook['webhook_id']}/status",
            params={"batch_id": batch_id},
            headers=secret,
        )
        body = await resp.json()
        return body if body["notification"]["status"] == "delivered" else None

    status = await wait_for(delivered, timeout=60, interval=0.1, what="batch notification delivered")
    assert status["status"] == "completed" and status["notification"]["attempts"] == 1
    await asyncio.sleep(0.5)
    assert len(got.got) == 1
    headers, raw = got.got[0]
    assert verify(raw, headers[notify.SIGNATURE_HEADER], KEY)
    body = json.loads(raw)
    assert body["event"] == "batch.finished" and body["id"] == batch_id and body["counter"] == COUNTER
    assert body["status"] == "completed" and body["webhook_id"] == hook["webhook_id"]
    assert body["counts"] == {"total": 3, "processed": 2, "failed": 1, "duplicate": 0, "ignored": 0}
    assert [r["row"] for r in body["failed_rows"]] == [1] and "no_such_goal" in body["failed_rows"][0][
        "error"
    ]
    assert hook["secret"] not in raw.decode() and "sandbox-token" not in raw.decode()


async def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(gateway, settings, pool, receiver):
    got, url = await receiver(500, 503)
    task_id = await _failed_task(gateway, pool, url)
    sender = notify.Sender(pool, notifying(settings))

    async def delivered():
        await sender.send_due()
        note = await _notification(gateway, task_id)
        return note if note["status"] == "delivered" else None

    note = await wait_for(delivered, timeout=10, interval=0.05, what="delivered on the third attempt")
    assert note["attempts"] == 3 and note["last_error"] is None and note["delivered_at"]
    assert len(got.got) == 3
    # the same body each time, each signed anew
    assert len({raw for _, raw in got.got}) == 1
    assert all(verify(raw, headers[notify.SIGNATURE_HEADER], KEY) for headers, raw in got.got)
    assert len({headers[notify.DELIVERY_HEADER] for headers, _ in got.got}) == 1
    body = json.loads(got.got[0][1])
    assert body["status"] == "failed" and body["error"].startswith("Logs API error")
    assert body["counts"] == {"total_visits": None, "level4_visits": None}


async def test_two_senders_deliver_once(gateway, settings, pool, receiver):
    got, url = await receiver()
    await _failed_task(gateway, pool, url)
    senders = [notify.Sender(pool, notifying(settings)) for _ in range(2)]
    counts = await asyncio.gather(*(s.send_due() for s in senders))
    assert sorted(counts) == [0, 1] and len(got.got) == 1


async def test_an_unreachable_receiver_ends_failed_after_the_horizon(gateway, settings, pool):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    task_id = await _failed_task(gateway, pool, url)
    sender = notify.Sender(pool, notifying(settings, notify_horizon_s=1.0))

    async def given_up():
        await sender.send_due()
        note = await _notification(gateway, task_id)
        return note if note["status"] == "failed" else None

    started = time.monotonic()
    note = await wait_for(given_up, timeout=10, interval=0.05, what="given up after the horizon")
    assert time.monotonic() - started >= 0.9
    assert note["attempts"] >= 3 and note["delivered_at"] is None
    assert "Connect" in note["last_error"] or "refused" in note["last_error"].lower(), note
    attempts = note["attempts"]
    await sender.send_due()
    assert (await _notification(gateway, task_id))["attempts"] == attempts  # never tried again


async def test_private_targets_are_refused_and_redirects_not_followed(gateway, settings, pool, receiver):
    got, url = await receiver(307)
    strict = notify.Sender(pool, notifying(settings, notify_allow_private=False, notify_horizon_s=0))
    loopback = await _failed_task(gateway, pool, url)
    by_name = await _failed_task(gateway, pool, url.replace("127.0.0.1", "localhost"))
    assert await strict.send_due() == 2
    for task_id in (loopback, by_name):
        note = await _notification(gateway, task_id)
        assert note["status"] == "failed" and "private or loopback" in note["last_error"], note
    assert got.got == []  # never reached

    redirected = await _failed_task(gateway, pool, url)
    lenient = notify.Sender(pool, notifying(settings, notify_horizon_s=0))
    assert await lenient.send_due() == 1
    note = await _notification(gateway, redirected)
    assert note["status"] == "failed" and "redirects are not followed" in note["last_error"]
    assert len(got.got) == 1  # the redirect's target was never asked


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://example.com/hook",
        "/relative/path",
        "https://user:pass@example.com/hook",
        "https://example.com:99999/hook",
        "https://exa mple.com/hook",
        "https://example.com/" + "a" * 2048,
        "",
        42,
    ],
)
async def test_a_bad_callback_url_is_422(gateway, bad):
    hook = await (
        await gateway.post(
            "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "t"}
        )
    ).json()
    requests = [
        ("POST", "/tasks", {"date": DAY.isoformat(), "counter": COUNTER}),
        ("POST", "/conversions/bulk", {"task_id": str(uuid.uuid4()), "target": "purchase"}),
        (
            "POST",
            "/conversions/single",
            {"client_id": "1", "target": "purchase", "date_time": NOW.isoformat()},
        ),
        ("POST", "/webhook/offline-conversions", {"name": "CRM", "counter_id": COUNTER, "token": "t"}),
        ("PATCH", f"/webhook/offline-conversions/{hook['webhook_id']}", {}),
    ]
    for method, path, body in requests:
        resp = await gateway.request(method, path, json={**body, "callback_url": bad})
        assert resp.status == 422, (path, await resp.text())
        detail = (await resp.json())["detail"]
        assert any(d["loc"][-1] == "callback_url" for d in detail), (path, detail)
        assert all(set(d) >= {"loc", "msg", "type"} for d in detail)


async def test_a_webhook_callback_url_can_be_set_and_cleared(gateway):
    resp = await gateway.post(
        "/webhook/offline-conversions",
        json={"name": "CRM", "counter_id": COUNTER, "token": "t", "callback_url": "https://example.com/h"},
    )
    hook = await resp.json()
    path = f"/webhook/offline-conversions/{hook['webhook_id']}"
    assert (await (await gateway.get("/webhook/offline-conversions")).json())[0]["callback_url"] == (
        "https://example.com/h"
    )
    resp = await gateway.patch(path, json={"callback_url": None})
    assert resp.status == 200 and (await resp.json())["callback_url"] is None
    resp = await gateway.patch(path, json={"callback_url": "http://example.org/x"})
    assert (await resp.json())["callback_url"] == "http://example.org/x"


def test_signature_and_development_key():
    body = b'{"event":"task.finished"}'
    header = notify.sign(KEY, body, int(time.time()))
    assert verify(body, header, KEY)
    assert not verify(body, notify.sign(KEY, body, int(time.time()) - 3600), KEY)  # too old: a replay
    from shared.settings import Settings

    assert (
        Settings(metrika_score_env="development").notify_signing_key.get_secret_value()
        == DEVELOPMENT_NOTIFY_KEY
    )
    with pytest.raises(SystemExit) as missing:
        Settings(
            metrika_score_env="production", token_encryption_key="k", api_keys="a"
        ).require_production_secrets("TOKEN_ENCRYPTION_KEY", "API_KEYS", "NOTIFY_SIGNING_KEY")
    assert str(missing.value).startswith("error: NOTIFY_SIGNING_KEY must be set outside development")


async def test_a_backfill_notifies_once_when_its_last_day_finishes(gateway, settings, pool, receiver):
    got, url = await receiver()
    first = DAY - dt.timedelta(days=2)
    body = {
        "date_from": str(first),
        "date_to": str(DAY),
        "counter": COUNTER,
        "token": "t",
        "callback_url": url,
    }
    resp = await gateway.post("/tasks", json=body)
    assert resp.status == 200, await resp.text()
    created = await resp.json()
    parent, days = created["task_id"], [uuid.UUID(d["task_id"]) for d in created["days"]]
    # its days name no callback of their own: finishing them sends nothing until the last one
    await finish(pool, days[0], visits_of(first, [1, 2]))
    await tasks.fail(pool, days[1], "Logs API error: the counter has no such day")
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0
    assert (await _notification(gateway, str(days[0]))) is None
    assert (await _notification(gateway, parent))["status"] == "pending"
    await finish(pool, days[2], visits_of(DAY, [3, 4, 5]))
    sender = notify.Sender(pool, notifying(settings))
    assert await sender.send_due() == 1 and await sender.send_due() == 0

    (note,) = got.bodies()
    assert note["event"] == "task.finished" and note["id"] == parent and note["counter"] == COUNTER
    assert note["date"] == str(first) and note["date_to"] == str(DAY)
    assert note["status"] == "failed" and note["error"] == "1 of 3 days failed"
    assert note["counts"] == {
        "days": 3, "days_completed": 2, "days_failed": 1, "total_visits": 2 * 4 + 3 * 4, "level4_visits": 5,
    }  # fmt: skip
    assert (await _notification(gateway, parent))["status"] == "delivered"

    # retried, its failed day completes: the backfill has finished again, and says so once more
    assert (await gateway.post(f"/tasks/{parent}/retry")).status == 202
    await finish(pool, days[1], visits_of(first + dt.timedelta(days=1), [6]))
    assert await sender.send_due() == 1
    again = got.bodies()[-1]
    assert again["status"] == "completed" and again["error"] is None
    assert again["counts"] == {
        "days": 3, "days_completed": 3, "days_failed": 0, "total_visits": 24, "level4_visits": 6,
    }  # fmt: skip


async def test_two_last_days_finishing_at_once_notify_the_backfill_once(gateway, pool, receiver):
    _, url = await receiver()
    body = {"date_from": str(DAY - dt.timedelta(days=1)), "date_to": str(DAY), "counter": COUNTER,
            "token": "t", "callback_url": url}  # fmt: skip
    created = await (await gateway.post("/tasks", json=body)).json()
    days = [uuid.UUID(d["task_id"]) for d in created["days"]]
    for _ in range(5):
        await asyncio.gather(*(tasks.fail(pool, day, "Logs API error: no") for day in days))
        assert await pool.fetchval("SELECT count(*) FROM notifications") == 1
        await pool.execute("DELETE FROM notifications")
        assert (await gateway.post(f"/tasks/{created['task_id']}/retry")).status == 202
