"""The gateway's answers to hostile or broken requests: credentials checked before a body is read, slow
bodies, failed authentication and management calls rate-limited, sliding webhook windows shared by
replicas, and no 500 for bytes, numbers or tokens a client chose badly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.limits import FAILED_AUTH_PER_MINUTE
from shared import errors
from tests.conftest import API_KEY, completed_task, override

HOOKS = "/webhook/offline-conversions"
NO_KEY = {"Authorization": ""}
YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()


def conversion(**fields: Any) -> dict[str, Any]:
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    return {"client_id": "1234567890.1234567890", "target": "purchase", "date_time": when} | fields


async def start(settings: Any, **changes: Any) -> TestClient[Any, Any]:
    """Another gateway (a replica: same database and broker) with some settings changed; closed by the
    caller's `async with`."""
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(override(settings, **changes)), host="127.0.0.1")
    )
    await client.start_server()
    client.session.headers["Authorization"] = f"Bearer {API_KEY}"
    return client


async def create_hook(client: TestClient[Any, Any]) -> dict[str, str]:
    resp = await client.post(HOOKS, json={"name": "crm", "counter_id": 1, "token": "y0_token"})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def submit(client: TestClient[Any, Any], hook: dict[str, str], secret: str | None = None) -> Any:
    headers = {"X-Webhook-Secret": secret or hook["secret"], **NO_KEY}
    return await client.post(
        f"{HOOKS}/{hook['webhook_id']}", json={"conversions": [conversion()]}, headers=headers
    )


async def raw(client: TestClient[Any, Any], request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send bytes as they are; (status, headers, JSON body) of the answer, which must not wait for more."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        # a guard against hanging for ever, not the assertion: every answer here comes at once
        status_line = await asyncio.wait_for(reader.readline(), timeout=60)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, json.loads(body)
    finally:
        writer.close()


def head(method: str, path: str, *lines: str, length: int = 0) -> bytes:
    """A request head announcing a body of `length` bytes (none of which is sent by this)."""
    fields = [f"{method} {path} HTTP/1.1", "Host: gateway", *lines]
    if length:
        fields += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(fields) + "\r\n\r\n").encode("latin-1")


async def test_a_non_utf8_authorization_is_401(gateway):
    for method, path in (("GET", HOOKS), ("POST", "/tasks"), ("GET", f"/tasks/{uuid.uuid4()}/status")):
        request = head(method, path, "Connection: close").replace(
            b"Host: gateway", b"Host: gateway\r\nAuthorization: Bearer \xff\xfe\xc3(key"
        )
        status, _, body = await raw(gateway, request)
        assert status == 401 and body == {"detail": "Invalid API key"}, (path, body)


async def test_a_non_utf8_webhook_secret_is_403(gateway):
    hook = await create_hook(gateway)
    request = head("POST", f"{HOOKS}/{hook['webhook_id']}", "Connection: close").replace(
        b"Host: gateway", b"Host: gateway\r\nX-Webhook-Secret: \xff\xfe"
    )
    status, _, body = await raw(gateway, request)
    assert status == 403 and body == {"detail": "Invalid webhook secret"}


async def test_the_result_offset_is_bounded(gateway, pool):
    task_id = await completed_task(pool, 2, start=dt.datetime(2026, 1, 1, 12))
    resp = await gateway.get(f"/tasks/{task_id}/result", params={"offset": str(2**63)})
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert detail[0]["loc"] == ["query", "offset"] and detail[0]["type"] == "less_than_equal"
    resp = await gateway.get(f"/tasks/{task_id}/result", params={"offset": str(2**31 - 1)})
    assert resp.status == 200 and (await resp.json())["data"] == []


async def test_a_500_carries_an_error_id_not_the_exception(settings, caplog):
    async def broken(request: web.Request) -> web.Response:
        raise ValueError("an internal detail")

    app = create_app(settings)
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        with caplog.at_level(logging.ERROR, logger="gateway.middlewares"):
            resp = await client.get("/broken", headers={"Authorization": f"Bearer {API_KEY}"})
            body = await resp.json()
    assert resp.status == 500
    assert set(body) == {"detail", "error_id"} and body["detail"] == "Internal server error"
    assert uuid.UUID(hex=body["error_id"]).hex == body["error_id"]
    assert "ValueError" not in json.dumps(body) and "internal detail" not in json.dumps(body)
    (record,) = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_every_error_is_answered_by_the_middleware_in_one_shape(settings):
    """One error type: status, detail, extra fields and headers; a 5xx AppError (a dead letter's reason
    raised in a handler) is a bug to the client, answered as any 500."""

    async def refused(request: web.Request) -> web.Response:
        raise errors.Conflict("Заказ уже есть", extra={"order": 7}, headers={"Retry-After": "3"})

    async def permanent(request: web.Request) -> web.Response:
        raise errors.Permanent("stored Metrika token cannot be decrypted")

    app = create_app(settings)
    app.router.add_get("/refused", refused)
    app.router.add_get("/permanent", permanent)
    key = {"Authorization": f"Bearer {API_KEY}"}
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/refused", headers=key)
        assert resp.status == 409 and resp.headers["Retry-After"] == "3"
        assert await resp.read() == '{"detail": "Заказ уже есть", "order": 7}'.encode()  # UTF-8, as FastAPI
        resp = await client.get("/permanent", headers=key)
        body = await resp.json()
        assert resp.status == 500 and set(body) == {"detail", "error_id"}
        assert body["detail"] == "Internal server error"
        resp = await client.get("/no/such/route", headers=key)
        assert resp.status == 404 and await resp.json() == {"detail": "Not Found"}


async def test_tokens_must_be_printable_ascii(gateway, pool):
    for token in ("y0\r\nX-Injected: 1", "y0\nabc", "y0\x00abc", "y0 abc", "y0_tök"):
        for path, body in (
            ("/tasks", {"date": YESTERDAY, "token": token, "counter": 1}),
            ("/conversions/single", conversion(token=token, counter=1)),
            ("/conversions/bulk", {"task_id": str(uuid.uuid4()), "target": "t", "token": token}),
            (HOOKS, {"name": "crm", "counter_id": 1, "token": token}),
        ):
            resp = await gateway.post(path, json=body)
            assert resp.status == 422, (path, token, await resp.text())
            detail = (await resp.json())["detail"]
            assert detail[0]["loc"][-1] == "token" and "printable ASCII" in detail[0]["msg"]
    for table in ("tasks", "batches", "webhooks"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_numbers_and_times_beyond_the_rules_are_refused(gateway, pool):
    hook = await create_hook(gateway)
    rows = [
        conversion(client_id=int("9" * 4300)),  # the longest integer JSON reads
        conversion(client_id=-5),
        conversion(price=1e308),
        conversion(purchase_id=-7),
        conversion(date_time=conversion()["date_time"] + "Z\u0000<anything>"),
        conversion(price=10**12),  # the highest price
    ]
    resp = await gateway.post(
        f"{HOOKS}/{hook['webhook_id']}",
        data=json.dumps({"conversions": rows}),
        headers={"X-Webhook-Secret": hook["secret"], "Content-Type": "application/json", **NO_KEY},
    )
    assert resp.status == 400
    found = {(e["index"], e["field"]): e["reason"] for e in (await resp.json())["errors"]}
    assert set(found) == {
        (0, "client_id"),
        (1, "client_id"),
        (2, "price"),
        (3, "purchase_id"),
        (4, "date_time"),
    }
    assert "128 characters" in found[(0, "client_id")] and "negative" in found[(1, "client_id")]
    assert "10^12" in found[(2, "price")] and "ISO 8601" in found[(4, "date_time")]
    assert await pool.fetchval("SELECT count(*) FROM batches") == 0


async def test_webhook_credentials_are_checked_before_the_body_is_read(settings):
    # a gateway that waited for the bodies below (never sent) would answer nothing for an hour
    client = await start(settings, body_read_timeout_s=3600)
    async with client:
        hook = await create_hook(client)
        inactive = await create_hook(client)
        await client.patch(f"{HOOKS}/{inactive['webhook_id']}", json={"is_active": False})
        announced = 5 * 1024 * 1024
        for path, lines, status, detail in (
            (f"{HOOKS}/{uuid.uuid4()}", [f"X-Webhook-Secret: {hook['secret']}"], 404, "Webhook not found"),
            (f"{HOOKS}/{hook['webhook_id']}", ["X-Webhook-Secret: wrong"], 403, "Invalid webhook secret"),
            (f"{HOOKS}/{hook['webhook_id']}", [], 403, "Missing webhook secret"),
            (
                f"{HOOKS}/{inactive['webhook_id']}",
                [f"X-Webhook-Secret: {inactive['secret']}"],
                403,
                "deactivated",
            ),
            ("/tasks", ["Authorization: Bearer wrong"], 401, "Invalid API key"),
        ):
            got, _, body = await raw(client, head("POST", path, *lines, length=announced))
            assert got == status and detail in body["detail"], (path, got, body)


async def test_a_body_that_does_not_arrive_in_time_is_408(settings, pool):
    client = await start(settings, body_read_timeout_s=0.3)
    async with client:
        hook = await create_hook(client)
        for path, lines in (
            (f"{HOOKS}/{hook['webhook_id']}", [f"X-Webhook-Secret: {hook['secret']}"]),
            ("/tasks", [f"Authorization: Bearer {API_KEY}"]),
        ):
            request = head("POST", path, *lines, length=100) + b'{"conversions": ['  # and no more
            status, headers, body = await raw(client, request)
            assert status == 408 and "did not arrive within 0.3 s" in body["detail"], body
            assert headers.get("connection", "").lower() == "close"
    assert await pool.fetchval("SELECT count(*) FROM batches") == 0


async def test_failed_authentication_is_limited_per_address(gateway):
    hook = await create_hook(gateway)
    assert (await submit(gateway, hook)).status == 200
    for _ in range(FAILED_AUTH_PER_MINUTE):
        assert (await submit(gateway, hook, secret="guess")).status == 403
    resp = await submit(gateway, hook, secret="guess")
    assert resp.status == 429 and 1 <= int(resp.headers["Retry-After"]) <= 60
    assert "failed authentication" in (await resp.json())["detail"]
    resp = await gateway.post(f"{HOOKS}/{uuid.uuid4()}", json={}, headers={"X-Webhook-Secret": "x", **NO_KEY})
    assert resp.status == 429
    # the rightful sender, with its webhook's secret, is not locked out by the guesses
    assert (await submit(gateway, hook)).status == 200
    # API keys may be guessable: from this address every key, even the right one, waits
    assert (await gateway.get(HOOKS, headers={"Authorization": "Bearer guess"})).status == 429
    assert (await gateway.get(HOOKS)).status == 429


async def test_the_webhook_window_slides_and_is_shared_by_replicas(settings, pool):
    first = await start(settings, webhook_rate_per_minute=3)
    second = await start(settings, webhook_rate_per_minute=3)
    third = await start(settings, webhook_rate_per_minute=3)
    fourth = await start(settings, webhook_rate_per_minute=3)
    async with first, second, third, fourth:
        hook = await create_hook(first)
        assert [(await submit(first, hook)).status for _ in range(3)] == [200, 200, 200]
        resp = await submit(first, hook)
        assert resp.status == 429 and 59 <= int(resp.headers["Retry-After"]) <= 61
        assert "at most 3 requests per minute" in (await resp.json())["detail"]
        # the other replica counts the same window (in Postgres)
        assert (await submit(second, hook)).status == 429
        # this replica now knows the webhook is full: it answers without reading a body
        request = head(
            "POST", f"{HOOKS}/{hook['webhook_id']}", f"X-Webhook-Secret: {hook['secret']}", length=10**6
        )
        status, headers, _ = await raw(first, request)
        assert status == 429 and int(headers["retry-after"]) >= 59

        # time passes (the window is moved back; each time asked of a replica that has not yet remembered
        # a 429 by its own clock): 30 s later the three are still within the last 60 s ...
        await pool.execute("UPDATE rate_windows SET second = second - 30")
        resp = await submit(third, hook)
        assert resp.status == 429 and 29 <= int(resp.headers["Retry-After"]) <= 31
        # ... 61 s later they are not, and each slot frees as its request turns 60 s old
        await pool.execute("UPDATE rate_windows SET second = second - 31")
        assert [(await submit(fourth, hook)).status for _ in range(4)] == [200, 200, 200, 429]
    assert await pool.fetchval("SELECT count(*) FROM batches") == 6


async def test_management_calls_are_limited_per_key(settings):
    first = await start(settings, api_rate_per_minute=3, api_keys=f"{API_KEY},other-key")
    second = await start(settings, api_rate_per_minute=3, api_keys=f"{API_KEY},other-key")
    async with first, second:
        assert [(await first.get(HOOKS)).status for _ in range(3)] == [200, 200, 200]
        resp = await first.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 1})
        assert resp.status == 429 and 1 <= int(resp.headers["Retry-After"]) <= 61
        assert "at most 3 management requests per minute per API key" in (await resp.json())["detail"]
        assert (await second.get(HOOKS)).status == 429  # shared by replicas
        assert (await first.get(HOOKS, headers={"Authorization": "Bearer other-key"})).status == 200
        assert (await first.get("/health")).status == 200  # public, not counted


async def test_health_when_all_is_well(gateway):
    resp = await gateway.get("/health", headers=NO_KEY)
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["database"] is True and body["outbox_pending"] == 0
    assert isinstance(body["broker_connected"], bool)
