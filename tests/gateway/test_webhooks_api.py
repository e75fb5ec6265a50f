from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import uuid
from decimal import Decimal

import aio_pika

from shared import broker
from shared.crypto import TokenCipher
from tests.conftest import AMQP_URL, next_message, outbox_drained, override, wait_for

TOKEN = "y0_webhook-oauth-token"
BASE = "/webhook/offline-conversions"
NO_KEY = {"Authorization": ""}


def recent(hours: float = 1) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).replace(microsecond=0)


def conversion(**fields):
    return {"client_id": "1234567890.1234567890", "target": "purchase", "date_time": _iso(recent())} | fields


# one format for every timestamp the API answers: UTC, offset, microseconds
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def create(gateway, **fields):
    body = {"name": "CRM System", "counter_id": 123456, "token": TOKEN, "description": "Webhook for CRM"}
    resp = await gateway.post(BASE, json=body | fields)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def submit(gateway, hook, conversions, secret=None, **kwargs):
    headers = {"X-Webhook-Secret": secret or hook["secret"], **NO_KEY}
    return await gateway.post(
        f"{BASE}/{hook['webhook_id']}", json={"conversions": conversions}, headers=headers, **kwargs
    )


async def counts(pool):
    return [
        await pool.fetchval(f"SELECT count(*) FROM {table}") for table in ("batches", "conversions", "outbox")
    ]


async def test_create_stores_only_a_hash_and_an_encrypted_token(gateway, settings, pool):
    hook = await create(gateway)
    assert set(hook) == {"webhook_id", "secret", "url"}
    assert hook["url"] == f"{settings.public_base_url}{BASE}/{hook['webhook_id']}"
    assert len(hook["secret"]) >= 40
    row = await pool.fetchrow("SELECT * FROM webhooks WHERE id = $1", uuid.UUID(hook["webhook_id"]))
    assert bytes(row["secret_hash"]) == hashlib.sha256(hook["secret"].encode()).digest()
    assert TOKEN.encode() not in bytes(row["token_enc"])
    assert TokenCipher(settings.token_encryption_key).decrypt(row["token_enc"]) == TOKEN
    assert row["counter_id"] == 123456 and row["is_active"] is True


async def test_create_validates(gateway, pool):
    for body in (
        {"name": "x", "counter_id": 1},
        {"name": "", "counter_id": 1, "token": "t"},
        {"name": "x", "counter_id": -1, "token": "t"},
        {"name": "x", "counter_id": 1, "token": "t", "secret": "mine"},
    ):
        resp = await gateway.post(BASE, json=body)
        assert resp.status == 422, body
        assert "mine" not in await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_list_never_shows_secret_or_token(gateway, settings):
    first = await create(gateway, name="First")
    second = await create(gateway, name="Second", description=None)
    resp = await gateway.get(BASE)
    assert resp.status == 200
    text = await resp.text()
    assert first["secret"] not in text and second["secret"] not in text and TOKEN not in text
    listed = json.loads(text)
    assert [w["name"] for w in listed] == ["First", "Second"]
    assert set(listed[0]) == {
        "webhook_id",
        "name",
        "description",
        "counter_id",
        "is_active",
        "created_at",
        "url",
        "source",
        "mapping",
        "has_application_token",
        "has_bitrix_webhook_url",
        "callback_url",
    }
    assert listed[0]["source"] == "json" and listed[0]["mapping"] is None
    assert listed[0]["has_application_token"] is False and listed[0]["has_bitrix_webhook_url"] is False
    assert listed[0]["webhook_id"] == first["webhook_id"] and listed[0]["url"] == first["url"]
    assert listed[1]["description"] is None and listed[0]["is_active"] is True
    assert re.fullmatch(TIMESTAMP, listed[0]["created_at"])


async def test_management_needs_the_api_key(gateway):
    hook = await create(gateway)
    wid = hook["webhook_id"]
    for method, path in (
        ("POST", BASE),
        ("GET", BASE),
        ("PATCH", f"{BASE}/{wid}"),
        ("POST", f"{BASE}/{wid}/rotate-secret"),
    ):
        resp = await gateway.request(method, path, json={"is_active": False}, headers=NO_KEY)
        assert resp.status == 401, (method, path)


async def test_submit_stores_rows_and_publishes(gateway, settings, pool):
    hook = await create(gateway)
    when = recent(2)
    rows = [
        {
            "client_id": "1234567890.1234567890",
            "target": "purchase",
            "date_time": when.astimezone(dt.timezone(dt.timedelta(hours=5))).isoformat(),
            "price": 1500.5,
            "currency": "rub",
            "purchase_id": "order123",
        },
        # naive: counter time zone (Europe/Moscow, UTC+3)
        {
            "user_id": "user123",
            "target": "registration",
            "date_time": (when + dt.timedelta(hours=3)).isoformat()[:19],
        },
        {"yclid": 18446744073709551615, "target": "call", "date_time": _iso(when), "unknown": "ignored"},
    ]
    resp = await submit(gateway, hook, rows)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (
        body["status"] == "accepted"
        and body["accepted_count"] == 3
        and set(body)
        == {
            "batch_id",
            "status",
            "accepted_count",
        }
    )
    batch_id = uuid.UUID(body["batch_id"])

    batch = await pool.fetchrow("SELECT * FROM batches WHERE id = $1", batch_id)
    assert (batch["source"], batch["status"], batch["counter_id"]) == ("webhook", "accepted", 123456)
    assert batch["webhook_id"] == uuid.UUID(hook["webhook_id"]) and batch["task_id"] is None
    assert TokenCipher(settings.token_encryption_key).decrypt(batch["token_enc"]) == TOKEN
    stored = await pool.fetch("SELECT * FROM conversions WHERE batch_id = $1 ORDER BY idx", batch_id)
    assert [(r["idx"], r["id_type"], r["identifier"]) for r in stored] == [
        (0, "CLIENT_ID", "1234567890.1234567890"),
        (1, "USER_ID", "user123"),
        (2, "YCLID", "18446744073709551615"),
    ]
    assert all(r["date_time"] == when for r in stored)
    assert stored[0]["price"] == Decimal("1500.5") and stored[0]["currency"] == "RUB"
    assert stored[0]["purchase_id"] == "order123" and stored[1]["price"] is None
    assert {r["status"] for r in stored} == {"pending"} and {r["reason"] for r in stored} == {None}

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(
            broker.Topology(settings.queue_prefix).queue(broker.CONVERSION_UPLOADS)
        )
        message = await next_message(queue)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert json.loads(message.body) == {"batch_ids": [str(batch_id)]}
        await message.ack()
    await wait_for(lambda: outbox_drained(pool), timeout=5)  # marked published a moment later


async def test_unknown_webhook_and_wrong_or_missing_secret(gateway, pool):
    hook = await create(gateway)
    for wid in (uuid.uuid4(), "not-a-uuid"):
        resp = await submit(gateway, {"webhook_id": wid, "secret": hook["secret"]}, [conversion()])
        assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}
    resp = await submit(gateway, hook, [conversion()], secret="wrong")
    assert resp.status == 403 and (await resp.json())["detail"] == "Invalid webhook secret"
    resp = await gateway.post(f"{BASE}/{hook['webhook_id']}", json={"conversions": [conversion()]})
    assert resp.status == 403 and "X-Webhook-Secret" in (await resp.json())["detail"]
    assert await counts(pool) == [0, 0, 0]


async def test_deactivate_and_reactivate(gateway, pool):
    hook = await create(gateway)
    path = f"{BASE}/{hook['webhook_id']}"
    resp = await gateway.patch(path, json={"is_active": False})
    assert resp.status == 200
    body = await resp.json()
    assert body["is_active"] is False and body["webhook_id"] == hook["webhook_id"] and "secret" not in body
    resp = await submit(gateway, hook, [conversion()])
    assert resp.status == 403 and await resp.json() == {"detail": "Webhook is deactivated"}
    assert await counts(pool) == [0, 0, 0]
    resp = await gateway.patch(path, json={"is_active": True})
    assert (await resp.json())["is_active"] is True
    assert (await submit(gateway, hook, [conversion()])).status == 200

    for bad in ({"is_active": "no"}, {}, {"is_active": False, "color": "x"}, {"is_active": None}):
        assert (await gateway.patch(path, json=bad)).status == 422
    for wid in (uuid.uuid4(), "nope"):
        resp = await gateway.patch(f"{BASE}/{wid}", json={"is_active": False})
        assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}


async def test_rotate_secret(gateway, pool):
    hook = await create(gateway)
    resp = await gateway.post(f"{BASE}/{hook['webhook_id']}/rotate-secret")
    assert resp.status == 200
    rotated = await resp.json()
    assert set(rotated) == {"webhook_id", "secret", "url"} and rotated["secret"] != hook["secret"]
    assert rotated["url"] == hook["url"]  # a json webhook's secret travels in the header, not the URL
    assert (await submit(gateway, hook, [conversion()])).status == 403
    assert (await submit(gateway, hook, [conversion()], secret=rotated["secret"])).status == 200
    resp = await gateway.post(f"{BASE}/{uuid.uuid4()}/rotate-secret")
    assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}


async def test_sixty_requests_a_minute_then_429(gateway, pool):
    hook = await create(gateway)
    for _ in range(60):
        resp = await submit(gateway, hook, [])  # refused for being empty, but counted
        assert resp.status == 400
    resp = await submit(gateway, hook, [conversion()])
    assert resp.status == 429
    # the slot frees when the first of the 60 is 60 s old, counted in whole seconds
    assert 59 <= int(resp.headers["Retry-After"]) <= 61
    assert "60 requests per minute" in (await resp.json())["detail"]
    assert await counts(pool) == [0, 0, 0]


async def test_rate_limit_is_a_setting_and_per_webhook(settings, aiohttp_client):
    from gateway.app import create_app

    app = create_app(override(settings, webhook_rate_per_minute=2))
    client = await aiohttp_client(app, headers={"Authorization": "Bearer test-api-key"})
    first, second = await create(client), await create(client)
    codes = [(await submit(client, first, [conversion()])).status for _ in range(3)]
    assert codes == [200, 200, 429]
    assert (await submit(client, second, [conversion()])).status == 200


async def test_concurrent_requests_each_get_their_own_answer(settings, aiohttp_client, pool):
    """Concurrent requests share one statement (gateway.intake); their answers must not mix."""
    from gateway.app import create_app

    app = create_app(override(settings, webhook_rate_per_minute=4))
    client = await aiohttp_client(app, headers={"Authorization": "Bearer test-api-key"})
    first, second = await create(client), await create(client)
    unknown = {"webhook_id": str(uuid.uuid4()), "secret": first["secret"]}
    calls = (
        [("first", submit(client, first, [conversion(purchase_id=f"p{i}")])) for i in range(6)]
        + [("wrong secret", submit(client, first, [conversion()], secret="wrong")) for _ in range(2)]
        + [("empty", submit(client, first, []))]
        + [("second", submit(client, second, [conversion()])) for _ in range(2)]
        + [("unknown", submit(client, unknown, [conversion()]))]
    )
    responses = await asyncio.gather(*(call for _, call in calls))
    got: dict[str, list[int]] = {}
    for (kind, _), resp in zip(calls, responses, strict=True):
        got.setdefault(kind, []).append(resp.status)
    assert got["wrong secret"] == [403, 403] and got["unknown"] == [404] and got["second"] == [200, 200]
    # seven requests to `first` carried its secret: four fit this minute's limit, three got 429
    first_codes = got["first"] + got["empty"]
    assert sorted(first_codes).count(429) == 3
    assert got["empty"][0] in (400, 429) and set(got["first"]) <= {200, 429}

    stored = {}
    for (kind, _), resp in zip(calls, responses, strict=True):
        if resp.status == 200:
            body = await resp.json()
            assert body["status"] == "accepted" and body["accepted_count"] == 1
            stored[uuid.UUID(body["batch_id"])] = first if kind == "first" else second
    assert len(stored) == got["first"].count(200) + 2
    rows = await pool.fetch("SELECT id, webhook_id, counter_id FROM batches")
    assert {r["id"]: str(r["webhook_id"]) for r in rows} == {
        batch_id: hook["webhook_id"] for batch_id, hook in stored.items()
    }
    assert await pool.fetchval("SELECT count(*) FROM conversions") == len(stored)
    # every stored batch is named in exactly one outbox row ...
    outbox_rows = await pool.fetch("SELECT body FROM outbox")
    named = [b for row in outbox_rows for b in row["body"]["batch_ids"]]
    assert sorted(named) == sorted(str(b) for b in stored)
    # ... and in exactly one message, the rows committed together announced in as few messages
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(
            broker.Topology(settings.queue_prefix).queue(broker.CONVERSION_UPLOADS)
        )
        announced: list[str] = []
        messages = 0
        while len(announced) < len(stored):
            message = await next_message(queue)
            announced += json.loads(message.body)["batch_ids"]
            messages += 1
            await message.ack()
        assert await queue.get(fail=False) is None
    assert sorted(announced) == sorted(named) and messages <= len(outbox_rows)


async def test_count_and_size_limits(gateway, pool):
    hook = await create(gateway)
    resp = await submit(gateway, hook, [conversion() for _ in range(1001)])
    assert resp.status == 413 and "1000" in (await resp.json())["detail"]
    assert (await submit(gateway, hook, [conversion() for _ in range(1000)])).status == 200
    await pool.execute("TRUNCATE batches CASCADE; TRUNCATE outbox")

    headers = {"X-Webhook-Secret": hook["secret"], "Content-Type": "application/json", **NO_KEY}
    big = b'{"conversions": [' + b" " * (11 * 1024 * 1024) + b"]}"
    resp = await gateway.post(f"{BASE}/{hook['webhook_id']}", data=big, headers=headers)
    assert resp.status == 413
    assert "10 MB" in (await resp.json())["detail"]

    async def chunks():  # no Content-Length: the limit is met while reading
        for _ in range(11):
            yield b" " * (1024 * 1024)

    resp = await gateway.post(f"{BASE}/{hook['webhook_id']}", data=chunks(), headers=headers)
    assert resp.status == 413 and "10 MB" in (await resp.json())["detail"]

    resp = await submit(gateway, hook, [])
    assert resp.status == 400 and "empty" in (await resp.json())["detail"]
    for data in (b"{oops", b'{"conversions": 5}', b"[]", b'{"conversions": [' + b"9" * 5000 + b"]}"):
        resp = await gateway.post(f"{BASE}/{hook['webhook_id']}", data=data, headers=headers)
        assert resp.status == 422, data[:20]
        assert isinstance((await resp.json())["detail"], list)
    resp = await gateway.post(f"{BASE}/{hook['webhook_id']}", data=b"[" * 100000, headers=headers)
    assert resp.status == 422
    assert await counts(pool) == [0, 0, 0]


async def test_invalid_rows_store_nothing(gateway, pool):
    hook = await create(gateway)
    future = _iso(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    rows = [
        conversion(),
        conversion(date_time=future),
        conversion(currency="RUR"),
        conversion(price=-5),
        conversion(client_id=1.75e17),
        {"target": "x", "date_time": _iso(recent())},
    ]
    resp = await submit(gateway, hook, rows)
    assert resp.status == 400
    body = await resp.json()
    assert body["detail"] == "5 of 6 conversions are invalid; nothing was stored"
    by_index = {e["index"]: e for e in body["errors"]}
    assert set(by_index) == {1, 2, 3, 4, 5}
    assert by_index[1]["field"] == "date_time" and "future" in by_index[1]["reason"]
    assert by_index[2]["field"] == "currency" and "ISO 4217" in by_index[2]["reason"]
    assert by_index[3]["field"] == "price" and "negative" in by_index[3]["reason"]
    assert by_index[4]["field"] == "client_id"
    assert "one of client_id, user_id, yclid" in by_index[5]["reason"]
    assert await counts(pool) == [0, 0, 0]


async def test_partial_accepts_valid_rows_and_keeps_failed_ones(gateway, pool):
    hook = await create(gateway)
    rows = [conversion(), conversion(currency="ZZZ"), conversion(user_id="u-7")]
    resp = await submit(gateway, hook, rows, params={"partial": "true"})
    assert resp.status == 200
    body = await resp.json()
    assert body["accepted_count"] == 2 and body["rejected_count"] == 1
    batch_id = uuid.UUID(body["batch_id"])
    stored = await pool.fetch(
        "SELECT idx, status, reason FROM conversions WHERE batch_id = $1 ORDER BY idx", batch_id
    )
    assert [(r["idx"], r["status"]) for r in stored] == [(0, "pending"), (1, "error"), (2, "pending")]
    assert "currency" in stored[1]["reason"] and "ISO 4217" in stored[1]["reason"]

    resp = await gateway.get(
        f"{BASE}/{hook['webhook_id']}/status",
        params={"batch_id": str(batch_id)},
        headers={"X-Webhook-Secret": hook["secret"], **NO_KEY},
    )
    status = await resp.json()
    assert status["total"] == 3 and status["errors"] == [{"index": 1, "reason": stored[1]["reason"]}]

    resp = await submit(gateway, hook, [conversion(target="")], params={"partial": "true"})
    assert resp.status == 400 and (await resp.json())["detail"].startswith("1 of 1 conversions are invalid")
    assert (await submit(gateway, hook, rows, params={"partial": "maybe"})).status == 422


async def test_batch_status_shape_and_scope(gateway, pool):
    hook = await create(gateway, counter_id=987)
    other = await create(gateway)
    resp = await submit(gateway, hook, [conversion(), conversion()])
    batch_id = (await resp.json())["batch_id"]
    path = f"{BASE}/{hook['webhook_id']}/status"
    secret = {"X-Webhook-Secret": hook["secret"], **NO_KEY}

    resp = await gateway.get(path, params={"batch_id": batch_id}, headers=secret)
    assert resp.status == 200
    body = await resp.json()
    assert list(body) == [
        "batch_id", "status", "webhook_id", "counter_id", "created_at", "updated_at", "metrika_upload_id",
        "total", "processed", "errors", "next_attempt_at", "attempts", "last_error", "notification",
    ]  # fmt: skip
    assert body["batch_id"] == batch_id and body["webhook_id"] == hook["webhook_id"]
    assert (body["status"], body["counter_id"], body["total"], body["processed"]) == ("accepted", 987, 2, 0)
    assert body["metrika_upload_id"] is None and body["errors"] is None
    created = dt.datetime.fromisoformat(body["created_at"])
    assert re.fullmatch(TIMESTAMP, body["created_at"])
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)

    await pool.execute(
        "INSERT INTO upload_files (batch_id, id_type, status, metrika_upload_id)"
        " VALUES ($1, 'CLIENT_ID', 'uploaded', '987654')",
        uuid.UUID(batch_id),
    )
    resp = await gateway.get(path, params={"batch_id": batch_id}, headers=secret)
    assert (await resp.json())["metrika_upload_id"] == "987654"

    # another webhook's batch, an unknown one, a missing or malformed id, a wrong secret
    resp = await gateway.get(
        f"{BASE}/{other['webhook_id']}/status",
        params={"batch_id": batch_id},
        headers={"X-Webhook-Secret": other["secret"], **NO_KEY},
    )
    assert resp.status == 404 and await resp.json() == {"detail": "Batch not found"}
    resp = await gateway.get(path, params={"batch_id": str(uuid.uuid4())}, headers=secret)
    assert resp.status == 404 and await resp.json() == {"detail": "Batch not found"}
    assert (await gateway.get(path, headers=secret)).status == 422
    assert (await gateway.get(path, params={"batch_id": "x"}, headers=secret)).status == 422
    resp = await gateway.get(
        path, params={"batch_id": batch_id}, headers={"X-Webhook-Secret": "no", **NO_KEY}
    )
    assert resp.status == 403

    # still readable once deactivated
    await gateway.patch(f"{BASE}/{hook['webhook_id']}", json={"is_active": False})
    assert (await gateway.get(path, params={"batch_id": batch_id}, headers=secret)).status == 200


async def test_secret_and_token_appear_only_at_creation_and_rotation(gateway):
    hook = await create(gateway)
    rotated = await (await gateway.post(f"{BASE}/{hook['webhook_id']}/rotate-secret")).json()
    secrets_ = (hook["secret"], rotated["secret"])
    texts = []
    resp = await submit(gateway, hook, [conversion()], secret=rotated["secret"])
    texts.append(await resp.text())
    batch_id = json.loads(texts[-1])["batch_id"]
    for resp in (
        await gateway.get(BASE),
        await gateway.patch(f"{BASE}/{hook['webhook_id']}", json={"is_active": True}),
        await submit(gateway, hook, [conversion()]),  # the old secret, refused
        await submit(gateway, hook, [conversion(price="x")], secret=rotated["secret"]),
        await gateway.get(
            f"{BASE}/{hook['webhook_id']}/status",
            params={"batch_id": batch_id},
            headers={"X-Webhook-Secret": rotated["secret"], **NO_KEY},
        ),
        await gateway.get(f"/conversions/{batch_id}/status"),
    ):
        texts.append(await resp.text())
    for text in texts:
        assert TOKEN not in text
        assert all(secret not in text for secret in secrets_), text
