from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal

import aio_pika

from gateway import keys
from gateway.intake import MAX_NOTICE_BATCHES
from shared import broker
from shared.conversions import Conversion
from shared.crypto import TokenCipher
from shared.db import batches, bulk, tasks
from tests.conftest import AMQP_URL, API_KEY, next_message, outbox_drained, override, wait_for
from tests.conftest import completed_task as stored_task

MSK = dt.timezone(dt.timedelta(hours=3))  # Europe/Moscow has had no DST since 2014

# the retry fields of an upload no failure has touched
NOT_RETRYING = {"next_attempt_at": None, "attempts": 0, "last_error": None}


def recent(hours: float = 1) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).replace(microsecond=0)


def single(**fields):
    body = {
        "client_id": "175085690441127503",
        "target": "purchase",
        "date_time": recent().isoformat(),
        "token": "oauth-single",
        "counter": 123456,
    }
    return body | fields


async def counts(pool):
    return [
        await pool.fetchval(f"SELECT count(*) FROM {table}") for table in ("batches", "conversions", "outbox")
    ]


DAY = dt.date.today() - dt.timedelta(days=2)  # recent enough for Metrika to attribute its visits


async def completed_task(
    pool, settings, n: int, token: str = "task-token", start: dt.datetime | None = None, step_s: int = 1
) -> uuid.UUID:
    """A finished scoring task of counter 777 with `n` level-4+ visits from `start` (noon of DAY)."""
    token_enc = TokenCipher(settings.token_encryption_key).encrypt(token)
    start = start or dt.datetime.combine(DAY, dt.time(12))
    return await stored_task(pool, n, start=start, step_s=step_s, counter=777, token_enc=token_enc)


async def test_single_is_stored_and_published(gateway, settings, pool):
    when = recent(3)
    resp = await gateway.post(
        "/conversions/single",
        json=single(
            date_time=when.astimezone(MSK).isoformat()[:19], price=1500.50, currency="RUB", purchase_id="p1"
        ),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "pending" and set(body) == {"upload_id", "status"}
    batch_id = uuid.UUID(body["upload_id"])

    batch = await pool.fetchrow("SELECT * FROM batches WHERE id = $1", batch_id)
    assert (batch["source"], batch["status"], batch["counter_id"]) == ("single", "pending", 123456)
    assert b"oauth-single" not in bytes(batch["token_enc"])
    assert TokenCipher(settings.token_encryption_key).decrypt(batch["token_enc"]) == "oauth-single"
    row = await pool.fetchrow("SELECT * FROM conversions WHERE batch_id = $1", batch_id)
    assert (row["idx"], row["id_type"], row["identifier"], row["target"]) == (
        0,
        "CLIENT_ID",
        "175085690441127503",
        "purchase",
    )
    assert row["date_time"] == when  # the naive time was read as Moscow time
    assert (row["price"], row["currency"], row["purchase_id"], row["status"]) == (
        Decimal("1500.5"),
        "RUB",
        "p1",
        "pending",
    )

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(
            broker.Topology(settings.queue_prefix).queue(broker.CONVERSION_UPLOADS)
        )
        message = await next_message(queue)
        assert json.loads(message.body) == {"batch_ids": [str(batch_id)]}
        await message.ack()
    await wait_for(lambda: outbox_drained(pool), timeout=5)  # marked published a moment later


async def test_single_ids_and_zones(gateway, pool):
    when = recent(5)
    resp = await gateway.post(
        "/conversions/single", json=single(client_id=None, yclid=2**64 - 1, date_time=when.isoformat())
    )
    assert resp.status == 200
    row = await pool.fetchrow("SELECT id_type, identifier, date_time FROM conversions")
    assert (row["id_type"], row["identifier"], row["date_time"]) == ("YCLID", str(2**64 - 1), when)

    resp = await gateway.post("/conversions/single", json=single(client_id=1.75085690441127e17))
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["field"] == "client_id"


async def test_single_invalid_row_is_400_and_stores_nothing(gateway, pool):
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).isoformat()
    resp = await gateway.post(
        "/conversions/single", json=single(date_time=future, price=-1, currency="rubles")
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["detail"] == "1 of 1 conversions are invalid; nothing was stored"
    assert {e["field"] for e in body["errors"]} == {"date_time", "price", "currency"}
    assert all(e["index"] == 0 for e in body["errors"])
    assert "oauth-single" not in json.dumps(body)
    assert await counts(pool) == [0, 0, 0]

    for data in (b"{nope", b"[1, 2]"):
        resp = await gateway.post(
            "/conversions/single", data=data, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 422 and isinstance((await resp.json())["detail"], list)
    resp = await gateway.post("/conversions/single", json=single(counter="abc"))
    assert resp.status == 422
    assert await counts(pool) == [0, 0, 0]


async def test_single_token_and_counter_fall_back_to_settings(gateway, settings, aiohttp_client, pool):
    resp = await gateway.post("/conversions/single", json=single(token=None))
    assert resp.status == 400 and await resp.json() == {"detail": "token is required (in body or env)"}
    resp = await gateway.post("/conversions/single", json=single(counter=None))
    assert resp.status == 400 and await resp.json() == {"detail": "counter is required (in body or env)"}
    assert await counts(pool) == [0, 0, 0]

    from gateway.app import create_app

    app = create_app(override(settings, metrika_token="env-token", metrika_counter=42))
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {API_KEY}"})
    resp = await client.post("/conversions/single", json=single(token=None, counter=None))
    assert resp.status == 200
    batch = await pool.fetchrow("SELECT counter_id, token_enc FROM batches")
    assert batch["counter_id"] == 42
    assert TokenCipher(settings.token_encryption_key).decrypt(batch["token_enc"]) == "env-token"


async def test_bulk_from_a_completed_task(gateway, settings, pool):
    task_id = await completed_task(pool, settings, 3)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": "4plus"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "pending"
    batch_id = uuid.UUID(body["upload_id"])
    # the batch is stored by the request; the uploader makes its rows first thing
    assert await pool.fetchval("SELECT count(*) FROM conversions WHERE batch_id = $1", batch_id) == 0
    assert await bulk.expand(pool, batch_id) == 3
    assert await bulk.expand(pool, batch_id) == 0  # once

    batch = await pool.fetchrow("SELECT * FROM batches WHERE id = $1", batch_id)
    assert (batch["source"], batch["status"], batch["task_id"], batch["counter_id"]) == (
        "bulk",
        "pending",
        task_id,
        777,
    )
    # the task's own token, re-encrypted onto the batch
    assert TokenCipher(settings.token_encryption_key).decrypt(batch["token_enc"]) == "task-token"
    rows = await pool.fetch("SELECT * FROM conversions WHERE batch_id = $1 ORDER BY idx", batch_id)
    assert [(r["idx"], r["id_type"], r["identifier"], r["target"]) for r in rows] == [
        (i, "CLIENT_ID", str(2**63 + i), "4plus") for i in range(3)
    ]
    # 12:00 Moscow is 09:00 UTC
    assert [r["date_time"] for r in rows] == [
        dt.datetime.combine(DAY, dt.time(9, 0, i), tzinfo=dt.UTC) for i in range(3)
    ]
    assert {r["status"] for r in rows} == {"pending"} and {r["price"] for r in rows} == {None}
    outbox_rows = "SELECT count(*) FROM outbox WHERE body->'batch_ids' ? $1"
    assert await pool.fetchval(outbox_rows, str(batch_id)) == 1

    resp = await gateway.post(
        "/conversions/bulk", json={"task_id": str(task_id), "target": "lead", "counter": 5, "token": "own"}
    )
    batch = await pool.fetchrow(
        "SELECT * FROM batches WHERE id = $1", uuid.UUID((await resp.json())["upload_id"])
    )
    assert batch["counter_id"] == 5
    assert TokenCipher(settings.token_encryption_key).decrypt(batch["token_enc"]) == "own"


async def test_bulk_refusals(gateway, settings, pool):
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(uuid.uuid4()), "target": "4plus"})
    assert resp.status == 404 and await resp.json() == {"detail": "Task not found"}

    pending = uuid.uuid4()
    await tasks.insert(pool, pending, dt.date(2025, 7, 1), 1, b"x")
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(pending), "target": "4plus"})
    assert resp.status == 409 and await resp.json() == {"detail": "Task not finished"}

    empty = await completed_task(pool, settings, 0)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(empty), "target": "4plus"})
    assert resp.status == 409 and "no level-4+ visits" in (await resp.json())["detail"]

    for body in (
        {"task_id": "nope", "target": "4plus"},
        {"task_id": str(empty)},
        {"task_id": str(empty), "target": ""},
    ):
        assert (await gateway.post("/conversions/bulk", json=body)).status == 422
    assert await counts(pool) == [0, 0, 0]


async def test_bulk_of_visits_too_old_for_metrika(gateway, settings, pool):
    limit = dt.timedelta(days=settings.conversion_max_age_days)
    old = await completed_task(pool, settings, 2, start=dt.datetime(2025, 7, 1, 12))
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(old), "target": "4plus"})
    assert resp.status == 409 and "more than 90 days old" in (await resp.json())["detail"]
    assert await counts(pool) == [0, 0, 0]

    # a day astride the limit: the older visits are kept as failed rows, reported by the status
    edge = (dt.datetime.now(MSK) - limit).replace(tzinfo=None, microsecond=0) - dt.timedelta(hours=1)
    astride = await completed_task(pool, settings, 3, start=edge, step_s=7200)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(astride), "target": "4plus"})
    assert resp.status == 200, await resp.text()
    upload_id = (await resp.json())["upload_id"]
    await bulk.expand(pool, uuid.UUID(upload_id))
    rows = await pool.fetch(
        "SELECT idx, status FROM conversions WHERE batch_id = $1 ORDER BY idx", uuid.UUID(upload_id)
    )
    assert [(r["idx"], r["status"]) for r in rows] == [(0, "error"), (1, "pending"), (2, "pending")]
    body = await (await gateway.get(f"/conversions/{upload_id}/status")).json()
    assert body["total"] == 3 and [e["index"] for e in body["errors"]] == [0]
    assert "more than 90 days old" in body["errors"][0]["reason"]


async def test_bulk_with_an_unreadable_task_token_needs_one(gateway, settings, pool):
    task_id = await completed_task(pool, settings, 1)
    await pool.execute("UPDATE tasks SET token_enc = 'garbage' WHERE id = $1", task_id)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": "4plus"})
    assert resp.status == 400 and await resp.json() == {"detail": "token is required (in body or env)"}
    resp = await gateway.post(
        "/conversions/bulk", json={"task_id": str(task_id), "target": "4plus", "token": "t"}
    )
    assert resp.status == 200


async def test_status_shapes(gateway, settings, pool):
    for path in (f"/conversions/{uuid.uuid4()}/status", "/conversions/42/status"):
        resp = await gateway.get(path)
        assert resp.status == 404 and await resp.json() == {"detail": "Upload not found"}

    task_id = await completed_task(pool, settings, 4)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": "4plus"})
    upload_id = (await resp.json())["upload_id"]
    await bulk.expand(pool, uuid.UUID(upload_id))
    resp = await gateway.get(f"/conversions/{upload_id}/status")
    assert resp.status == 200
    assert await resp.json() == {
        "upload_id": upload_id,
        "status": "pending",
        "errors": None,
        "processed": 0,
        "total": 4,
        **NOT_RETRYING,
        "notification": None,
    }

    # what the uploader leaves behind: a failed row, a processed file with unlinked rows, a batch error
    batch_id = uuid.UUID(upload_id)
    await batches.fail_rows(pool, batch_id, [2], "Metrika refused the row", retryable=False)
    await pool.execute(
        """INSERT INTO upload_files (batch_id, id_type, status, metrika_upload_id, line_quantity,
                                     linked_quantity, user_not_found_quantity, goal_not_found_quantity)
           VALUES ($1, 'CLIENT_ID', 'processed', '555', 3, 1, 2, 0)""",
        batch_id,
    )
    await pool.execute(
        "UPDATE conversions SET status = 'completed' WHERE batch_id = $1 AND idx IN (0, 1)", batch_id
    )
    await batches.set_status(pool, batch_id, "error", "upload of YCLID rows failed")
    body = await (await gateway.get(f"/conversions/{upload_id}/status")).json()
    assert (body["status"], body["processed"], body["total"]) == ("error", 2, 4)
    assert body["errors"] == [
        {"index": None, "reason": "upload of YCLID rows failed"},
        {"index": 2, "reason": "Metrika refused the row"},
        {
            "index": None,
            "id_type": "CLIENT_ID",
            "reason": "Metrika linked 1 of 3 rows; 2 rows: visitor not found",
        },
    ]


async def test_many_failed_rows_are_counted_not_all_listed(gateway, settings, pool):
    task_id = await completed_task(pool, settings, 1005)
    resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": "4plus"})
    upload_id = (await resp.json())["upload_id"]
    await bulk.expand(pool, uuid.UUID(upload_id))
    await batches.fail_rows(pool, uuid.UUID(upload_id), list(range(1005)), "file refused", retryable=False)
    errors = (await (await gateway.get(f"/conversions/{upload_id}/status")).json())["errors"]
    assert len(errors) == 1001 and errors[999] == {"index": 999, "reason": "file refused"}
    assert errors[1000] == {"index": None, "reason": "5 more failed row(s) not listed"}


async def test_task_conversions_lists_every_upload_of_the_task(gateway, settings, pool):
    for path in (f"/tasks/{uuid.uuid4()}/conversions", "/tasks/x/conversions"):
        resp = await gateway.get(path)
        assert resp.status == 404 and await resp.json() == {"detail": "Task not found"}

    task_id = await completed_task(pool, settings, 2)
    resp = await gateway.get(f"/tasks/{task_id}/conversions")
    assert resp.status == 200 and await resp.json() == []
    ids = []
    for target in ("4plus", "lead"):
        resp = await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": target})
        ids.append((await resp.json())["upload_id"])
        await bulk.expand(pool, uuid.UUID(ids[-1]))
    await batches.fail_rows(pool, uuid.UUID(ids[1]), [1], "bad", retryable=False)
    listed = await (await gateway.get(f"/tasks/{task_id}/conversions")).json()
    assert listed == [
        {
            "upload_id": ids[0],
            "status": "pending",
            "errors": None,
            "processed": 0,
            "total": 2,
            **NOT_RETRYING,
            "notification": None,
        },
        {
            "upload_id": ids[1],
            "status": "pending",
            "errors": [{"index": 1, "reason": "bad"}],
            "processed": 0,
            "total": 2,
            **NOT_RETRYING,
            "notification": None,
        },
    ]


async def test_endpoints_need_the_api_key_and_never_return_tokens(gateway, settings, pool):
    task_id = await completed_task(pool, settings, 1)
    no_key = {"Authorization": ""}
    for method, path in (
        ("POST", "/conversions/bulk"),
        ("POST", "/conversions/single"),
        ("GET", f"/conversions/{uuid.uuid4()}/status"),
        ("GET", f"/tasks/{task_id}/conversions"),
    ):
        assert (await gateway.request(method, path, json={}, headers=no_key)).status == 401
    texts = [
        await (await gateway.post("/conversions/single", json=single())).text(),
        await (await gateway.post("/conversions/bulk", json={"task_id": str(task_id), "target": "g"})).text(),
        await (await gateway.get(f"/tasks/{task_id}/conversions")).text(),
    ]
    assert not any("oauth-single" in t or "task-token" in t for t in texts)


async def test_a_burst_is_announced_in_messages_of_at_most_64_batches(gateway, settings, pool):
    intake = gateway.server.app[keys.INTAKE]
    when = recent(1)
    new = []
    for i in range(150):
        batch_id = uuid.uuid4()
        row = Conversion(0, "CLIENT_ID", str(10**18 + i), "purchase", when)
        new.append(
            batches.NewBatch(batch_id, "single", None, None, 1, b"t", "pending", [row.record(batch_id)])
        )
    await asyncio.gather(*(intake.store(batch) for batch in new))

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(
            broker.Topology(settings.queue_prefix).queue(broker.CONVERSION_UPLOADS)
        )
        sizes, announced = [], []
        while len(announced) < len(new):
            message = await next_message(queue)
            ids = json.loads(message.body)["batch_ids"]
            sizes.append(len(ids))
            announced += ids
            await message.ack()
    assert sorted(announced) == sorted(str(batch.id) for batch in new)
    assert max(sizes) <= MAX_NOTICE_BATCHES and len(sizes) >= 3
    await wait_for(lambda: outbox_drained(pool), timeout=5)
