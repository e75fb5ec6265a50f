"""The webhook resource: a source and mapping per webhook, the secret in the URL, PATCH, DELETE, rotation."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr

from gateway.middlewares import shown_path
from sandbox.app import CONVERSIONS, VISITORS
from shared.crypto import TokenCipher, rekey
from shared.db import locks
from tests.conftest import wait_for
from uploader.main import main as uploader_main

BASE = "/webhook/offline-conversions"
NO_KEY = {"Authorization": ""}
COUNTER = 5151
GOOD_TOKEN = "sandbox-token"  # the sandbox accepts it
BAD_TOKEN = "y0_rejected-by-the-sandbox"
APP_TOKEN = "5185a7f3b1c04d2e9f6a8b7c6d5e4f3a"
BITRIX_URL = "https://example.bitrix24.ru/rest/1/s3cr3tw3bh00kc0de/"
AMO_MAPPING = {
    "target_by_status": {"142": "purchase"},
    "client_id_field": "4001",
    "price_field": "price",
    "currency": "rub",
}
BITRIX_MAPPING = {
    "target_by_status": {"WON": "purchase", "C1:WON": "purchase", "UC_ABC123": "lead"},
    "client_id_field": "UF_CRM_1700000000",
    "yclid_field": "UF_CRM_1700000001",
    "currency": "RUB",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded", **NO_KEY}
AMO_BODY = "leads[status][0][id]=123&leads[status][0][status_id]=142&account[id]=999"


def conversion(i: int = 0, **fields):
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(microsecond=0)
    return {"client_id": str(10**18 + i), "target": "purchase", "date_time": when.isoformat()} | fields


async def create(gateway, **fields):
    body = {"name": "CRM", "counter_id": COUNTER, "token": GOOD_TOKEN} | fields
    resp = await gateway.post(BASE, json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def listed(gateway, hook):
    resp = await gateway.get(BASE)
    assert resp.status == 200
    return next((w for w in await resp.json() if w["webhook_id"] == hook["webhook_id"]), None)


async def post_json(gateway, path, rows, **kwargs):
    return await gateway.post(path, json={"conversions": rows}, **kwargs)


async def status_by_key(gateway, batch_id):
    resp = await gateway.get(f"/conversions/{batch_id}/status")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def stored_counts(pool):
    return [await pool.fetchval(f"SELECT count(*) FROM {t}") for t in ("batches", "conversions", "outbox")]


async def test_create_with_each_source(gateway, settings, pool):
    cipher = TokenCipher(settings.token_encryption_key)
    plain = await create(gateway)
    amo = await create(gateway, source="amocrm", mapping=AMO_MAPPING)
    bitrix = await create(
        gateway,
        source="bitrix24",
        mapping=BITRIX_MAPPING,
        application_token=APP_TOKEN,
        bitrix_webhook_url=BITRIX_URL,
    )
    base = f"{settings.public_base_url}{BASE}"
    assert plain["url"] == f"{base}/{plain['webhook_id']}"  # json: the secret goes in the header
    for hook in (amo, bitrix):  # a CRM calls its URL as it is: the secret is its last segment
        assert hook["url"] == f"{base}/{hook['webhook_id']}/{hook['secret']}"

    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM webhooks")}
    assert rows[uuid.UUID(plain["webhook_id"])]["source"] == "json"
    assert rows[uuid.UUID(plain["webhook_id"])]["mapping"] is None
    amo_row, bitrix_row = rows[uuid.UUID(amo["webhook_id"])], rows[uuid.UUID(bitrix["webhook_id"])]
    assert amo_row["source"] == "amocrm" and amo_row["application_token_enc"] is None
    assert amo_row["mapping"] == {
        "target_by_status": {"142": "purchase"},
        "client_id_field": "4001",
        "yclid_field": None,
        "user_id_field": None,
        "price_field": "price",
        "currency": "RUB",
    }
    assert bitrix_row["source"] == "bitrix24"
    assert bitrix_row["mapping"]["target_by_status"] == BITRIX_MAPPING["target_by_status"]
    for column, value in (("application_token_enc", APP_TOKEN), ("bitrix_webhook_url_enc", BITRIX_URL)):
        assert value.encode() not in bytes(bitrix_row[column])
        assert cipher.decrypt(bitrix_row[column]) == value

    resp = await gateway.get(BASE)
    text = await resp.text()
    for secret in (APP_TOKEN, BITRIX_URL, GOOD_TOKEN, "s3cr3tw3bh00kc0de", amo["secret"], bitrix["secret"]):
        assert secret not in text
    shown = {w["webhook_id"]: w for w in json.loads(text)}
    assert shown[amo["webhook_id"]]["source"] == "amocrm"
    assert shown[amo["webhook_id"]]["mapping"]["target_by_status"] == {"142": "purchase"}
    assert shown[amo["webhook_id"]]["has_application_token"] is False
    assert shown[bitrix["webhook_id"]]["has_application_token"] is True
    assert shown[bitrix["webhook_id"]]["has_bitrix_webhook_url"] is True
    assert shown[bitrix["webhook_id"]]["url"] == f"{base}/{bitrix['webhook_id']}"  # never the secret


async def test_unknown_sources_and_bad_mappings_are_422(gateway, pool):
    def with_rules(**mapping):
        return {"target_by_status": {"142": "purchase"}} | mapping

    cases = [
        {"source": "salesforce"},
        {"source": None},
        {"source": "amocrm"},  # no mapping
        {"source": "amocrm", "mapping": None},
        {"source": "amocrm", "mapping": {"target_by_status": {}}},
        {"source": "amocrm", "mapping": "142=purchase"},
        {"source": "amocrm", "mapping": with_rules(colour="red")},
        {"source": "amocrm", "mapping": {"target_by_status": {"WON": "purchase"}}},  # amoCRM ids are numbers
        {"source": "amocrm", "mapping": {"target_by_status": {"142": ""}}},
        {"source": "amocrm", "mapping": {"target_by_status": {"142": "x" * 256}}},
        {"source": "amocrm", "mapping": {"target_by_status": {"142": "bad\ntarget"}}},
        {"source": "amocrm", "mapping": {"target_by_status": {"142": 5}}},
        {"source": "amocrm", "mapping": {"target_by_status": {"1 42": "purchase"}}},
        {"source": "amocrm", "mapping": with_rules(currency="RUR")},
        {"source": "amocrm", "mapping": with_rules(client_id_field="f" * 129)},
        {"source": "amocrm", "mapping": with_rules(), "application_token": APP_TOKEN},  # Bitrix24 only
        {"source": "amocrm", "mapping": with_rules(), "bitrix_webhook_url": BITRIX_URL},
        {"source": "bitrix24", "mapping": {"target_by_status": {"won": "purchase"}}},  # ids are upper case
        {"source": "bitrix24", "mapping": {"target_by_status": {"WON": "p"}, "client_id_field": "uf_crm_1"}},
        {
            "source": "bitrix24",
            "mapping": {"target_by_status": {"WON": "p"}},
            "bitrix_webhook_url": "ftp://x.ru/",
        },
        {
            "source": "bitrix24",
            "mapping": {"target_by_status": {"WON": "p"}},
            "bitrix_webhook_url": "portal.ru",
        },
        {
            "source": "bitrix24",
            "mapping": {"target_by_status": {"WON": "p"}},
            "bitrix_webhook_url": "https://",
        },
        {"source": "bitrix24", "mapping": {"target_by_status": {"WON": "p"}}, "application_token": "a b"},
        {"mapping": with_rules()},  # json webhooks take no mapping
        {"application_token": APP_TOKEN},
    ]
    for fields in cases:
        resp = await gateway.post(
            BASE, json={"name": "CRM", "counter_id": COUNTER, "token": GOOD_TOKEN} | fields
        )
        assert resp.status == 422, fields
        body = await resp.json()
        assert isinstance(body["detail"], list) and body["detail"], body
        assert APP_TOKEN not in await resp.text() and "s3cr3tw3bh00kc0de" not in await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_secret_url_forms_store_a_batch_the_uploader_completes(gateway, settings, sandbox, run_service):
    hook = await create(gateway)
    path = f"{BASE}/{hook['webhook_id']}"
    sandbox.app[VISITORS].register(COUNTER, [conversion(i)["client_id"] for i in range(3)])
    batch_ids = []
    for kwargs in (
        {"path": f"{path}/{hook['secret']}"},  # the secret as a path segment
        {"path": path, "params": {"secret": hook["secret"]}},  # ?secret= on the plain url
        {"path": path, "params": {"secret": hook["secret"], "partial": "true"}},
    ):
        rows = [conversion(len(batch_ids))]
        resp = await post_json(gateway, kwargs.pop("path"), rows, headers=NO_KEY, **kwargs)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["status"] == "accepted" and body["accepted_count"] == 1
        batch_ids.append(body["batch_id"])
    run_service(uploader_main, settings)

    async def all_completed():
        statuses = []
        for batch_id in batch_ids:  # the webhook's status endpoint takes ?secret= too
            resp = await gateway.get(
                f"{path}/status", params={"batch_id": batch_id, "secret": hook["secret"]}, headers=NO_KEY
            )
            assert resp.status == 200
            statuses.append((await resp.json())["status"])
        return statuses == ["completed"] * 3

    await wait_for(all_completed, timeout=60, interval=0.1, what="the three batches completed")
    sent = sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))
    assert sent == sorted(conversion(i)["client_id"] for i in range(3))


async def test_secret_url_refusals(gateway, pool):
    hook = await create(gateway)
    path = f"{BASE}/{hook['webhook_id']}"
    for url, params in (
        (f"{path}/wrong-secret", {}),
        (f"{path}/{hook['secret']}x", {}),
        (path, {"secret": "wrong"}),
    ):
        resp = await post_json(gateway, url, [conversion()], params=params, headers=NO_KEY)
        assert resp.status == 403 and await resp.json() == {"detail": "Invalid webhook secret"}, url
    resp = await post_json(gateway, path, [conversion()], headers=NO_KEY)
    assert resp.status == 403 and "X-Webhook-Secret" in (await resp.json())["detail"]
    for wid in (uuid.uuid4(), "not-a-uuid"):
        resp = await post_json(gateway, f"{BASE}/{wid}/{hook['secret']}", [conversion()], headers=NO_KEY)
        assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}
    assert await stored_counts(pool) == [0, 0, 0]
    # failures by URL count against the same per-address limit as header ones (20 a minute): 5 so far
    for _ in range(15):
        resp = await post_json(gateway, f"{path}/wrong", [conversion()], headers=NO_KEY)
        assert resp.status == 403
    resp = await post_json(gateway, f"{path}/wrong", [conversion()], headers=NO_KEY)
    assert resp.status == 429 and "failed authentication" in (await resp.json())["detail"]


async def test_crm_webhook_takes_its_own_body_by_its_url_and_403_with_a_wrong_secret(gateway, pool):
    amo = await create(gateway, source="amocrm", mapping=AMO_MAPPING)
    bitrix = await create(gateway, source="bitrix24", mapping=BITRIX_MAPPING, application_token=APP_TOKEN)
    plain = f"{BASE}/{amo['webhook_id']}"
    for resp in (
        await gateway.post(f"{plain}/{amo['secret']}", data=AMO_BODY, headers=FORM),
        await gateway.post(plain, data=AMO_BODY, params={"secret": amo["secret"]}, headers=FORM),
    ):
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["events"] == 1
    # a body of another kind is a 400 naming what the webhook reads (and is kept, with a batch of none)
    for hook, name, resp in (
        (
            amo,
            "amoCRM",
            await post_json(
                gateway, plain, [conversion()], headers={"X-Webhook-Secret": amo["secret"], **NO_KEY}
            ),
        ),
        (
            bitrix,
            "Bitrix24",
            await gateway.post(
                f"{BASE}/{bitrix['webhook_id']}/{bitrix['secret']}", data=AMO_BODY, headers=FORM
            ),
        ),
    ):
        assert resp.status == 400, await resp.text()
        detail = (await resp.json())["detail"]
        assert name in detail and hook["secret"] not in detail
    for hook in (amo, bitrix):
        resp = await gateway.post(f"{BASE}/{hook['webhook_id']}/wrong-secret", data=AMO_BODY, headers=FORM)
        assert resp.status == 403 and await resp.json() == {"detail": "Invalid webhook secret"}
    await gateway.patch(f"{BASE}/{amo['webhook_id']}", json={"is_active": False})
    resp = await gateway.post(f"{BASE}/{amo['webhook_id']}/{amo['secret']}", data=AMO_BODY, headers=FORM)
    assert resp.status == 403 and await resp.json() == {"detail": "Webhook is deactivated"}
    assert await stored_counts(pool) == [2, 0, 2]  # two accepted requests: two batches, rows made later
    assert await pool.fetchval("SELECT count(*) FROM crm_requests") == 4


async def test_patch_each_field(gateway, settings, pool):
    cipher = TokenCipher(settings.token_encryption_key)
    hook = await create(gateway, source="bitrix24", mapping=BITRIX_MAPPING, description="old")
    path = f"{BASE}/{hook['webhook_id']}"

    async def patch(**fields):
        resp = await gateway.patch(path, json=fields)
        assert resp.status == 200, (fields, await resp.text())
        body = await resp.json()
        assert body == {**(await listed(gateway, hook)), "batches_updated": 0}
        return body

    async def row():
        return await pool.fetchrow("SELECT * FROM webhooks WHERE id = $1", uuid.UUID(hook["webhook_id"]))

    assert (await patch(name="Renamed"))["name"] == "Renamed"
    assert (await patch(description="new"))["description"] == "new"
    assert (await patch(description=None))["description"] is None
    body = await patch(token="y0_new-token")
    assert "y0_new-token" not in json.dumps(body)
    assert cipher.decrypt((await row())["token_enc"]) == "y0_new-token"
    assert (await patch(counter_id=777))["counter_id"] == 777
    new_mapping = {"target_by_status": {"C2:WON": "order_confirmed"}, "user_id_field": "CONTACT_ID"}
    body = await patch(mapping=new_mapping)
    assert body["mapping"]["target_by_status"] == {"C2:WON": "order_confirmed"}
    assert body["mapping"]["user_id_field"] == "CONTACT_ID" and body["mapping"]["client_id_field"] is None
    assert (await patch(is_active=False))["is_active"] is False
    body = await patch(application_token=APP_TOKEN, bitrix_webhook_url=BITRIX_URL)
    assert body["has_application_token"] is True and body["has_bitrix_webhook_url"] is True
    assert APP_TOKEN not in json.dumps(body) and "s3cr3t" not in json.dumps(body)
    stored = await row()
    assert cipher.decrypt(stored["application_token_enc"]) == APP_TOKEN
    assert cipher.decrypt(stored["bitrix_webhook_url_enc"]) == BITRIX_URL
    body = await patch(application_token=None, bitrix_webhook_url=None)
    assert body["has_application_token"] is False and body["has_bitrix_webhook_url"] is False
    body = await patch(name="All", is_active=True, counter_id=888)
    assert (body["name"], body["is_active"], body["counter_id"]) == ("All", True, 888)
    assert body["source"] == "bitrix24" and body["description"] is None

    before = dict(await row())
    for bad in (
        {"source": "json"},  # fixed at creation
        {"source": "bitrix24"},
        {"colour": "red"},
        {},
        {"name": None},
        {"token": None},
        {"counter_id": 0},
        {"mapping": None},  # a bitrix24 webhook needs one
        {"mapping": {"target_by_status": {"142": "purchase"}, "extra": 1}},
        {"mapping": {"target_by_status": {"won": "purchase"}}},
        {"bitrix_webhook_url": "javascript:alert(1)"},
        {"is_active": "yes"},
    ):
        resp = await gateway.patch(path, json=bad)
        assert resp.status == 422, bad
        assert isinstance((await resp.json())["detail"], list)
    assert dict(await row()) == before
    resp = await gateway.patch(path, json={"source": "json"})
    assert "fixed at creation" in json.dumps(await resp.json())

    amo = await create(gateway, source="amocrm", mapping=AMO_MAPPING)
    plain = await create(gateway)
    for hook_, bad in (
        (amo, {"mapping": {"target_by_status": {"WON": "purchase"}}}),
        (amo, {"application_token": APP_TOKEN}),
        (plain, {"mapping": {"target_by_status": {"142": "purchase"}}}),
        (plain, {"bitrix_webhook_url": BITRIX_URL}),
    ):
        resp = await gateway.patch(f"{BASE}/{hook_['webhook_id']}", json=bad)
        assert resp.status == 422, bad
        assert APP_TOKEN not in await resp.text() and "s3cr3t" not in await resp.text()
    resp = await gateway.patch(
        f"{BASE}/{amo['webhook_id']}",
        json={"mapping": {"target_by_status": {"143": "call"}, "client_id_field": "4001"}},
    )
    assert resp.status == 200 and (await resp.json())["mapping"]["target_by_status"] == {"143": "call"}
    for wid in (uuid.uuid4(), "nope"):
        resp = await gateway.patch(f"{BASE}/{wid}", json={"name": "x"})
        assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}


async def test_a_token_change_reaches_the_batches_not_uploaded_yet(
    gateway, settings, sandbox, pool, run_service
):
    cipher = TokenCipher(settings.token_encryption_key)
    hook = await create(gateway, token=BAD_TOKEN)
    control = await create(gateway, token=BAD_TOKEN)  # left alone: proves the sandbox refuses the token
    sandbox.app[VISITORS].register(COUNTER, [conversion(i)["client_id"] for i in range(4)])

    async def submit(to, i):
        resp = await post_json(
            gateway,
            f"{BASE}/{to['webhook_id']}",
            [conversion(i)],
            headers={"X-Webhook-Secret": to["secret"], **NO_KEY},
        )
        assert resp.status == 200
        return uuid.UUID((await resp.json())["batch_id"])

    waiting = await submit(hook, 0)  # no uploader yet: stays accepted
    sending = await submit(hook, 1)
    done = await submit(hook, 2)
    refused = await submit(control, 3)
    # `sending` has a file on its way to Metrika, `done` is finished: both keep their credentials
    await pool.execute("UPDATE batches SET status = 'pending' WHERE id = $1", sending)
    await pool.execute(
        "INSERT INTO upload_files (batch_id, id_type, status) VALUES ($1, 'CLIENT_ID', 'uploading')", sending
    )
    await pool.execute("UPDATE batches SET status = 'completed' WHERE id = $1", done)

    resp = await gateway.patch(f"{BASE}/{hook['webhook_id']}", json={"token": GOOD_TOKEN})
    assert resp.status == 200
    assert (await resp.json())["batches_updated"] == 1
    tokens = {
        r["id"]: cipher.decrypt(r["token_enc"]) for r in await pool.fetch("SELECT id, token_enc FROM batches")
    }
    assert tokens == {waiting: GOOD_TOKEN, sending: BAD_TOKEN, done: BAD_TOKEN, refused: BAD_TOKEN}

    run_service(uploader_main, settings)

    async def final(batch_id):
        body = await status_by_key(gateway, batch_id)  # the upload vocabulary: "processed"
        return body if body["status"] in ("processed", "error") else None

    assert (await wait_for(lambda: final(waiting), timeout=60, interval=0.1))["status"] == "processed"
    control_status = await wait_for(lambda: final(refused), timeout=60, interval=0.1)
    assert control_status["status"] == "error"
    sent = [line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER)]
    assert conversion(0)["client_id"] in sent and conversion(3)["client_id"] not in sent


async def test_a_counter_change_skips_a_batch_an_uploader_holds(gateway, settings, pool):
    hook = await create(gateway)
    secret = {"X-Webhook-Secret": hook["secret"], **NO_KEY}
    ids = []
    for i in range(2):
        resp = await post_json(gateway, f"{BASE}/{hook['webhook_id']}", [conversion(i)], headers=secret)
        ids.append(uuid.UUID((await resp.json())["batch_id"]))
    async with locks.hold(pool, ids[1]) as locked:  # as the uploader does while it uploads
        assert locked
        resp = await gateway.patch(f"{BASE}/{hook['webhook_id']}", json={"counter_id": 4242})
        assert resp.status == 200
        body = await resp.json()
    assert body["counter_id"] == 4242 and body["batches_updated"] == 1
    counters = {r["id"]: r["counter_id"] for r in await pool.fetch("SELECT id, counter_id FROM batches")}
    assert counters == {ids[0]: 4242, ids[1]: COUNTER}
    # the lock taken by the PATCH ended with its transaction: an uploader can take the batch now
    async with locks.hold(pool, ids[0]) as locked:
        assert locked


async def test_delete_keeps_the_batches_readable_by_api_key(gateway, pool):
    hook = await create(gateway)
    other = await create(gateway)
    path = f"{BASE}/{hook['webhook_id']}"
    secret = {"X-Webhook-Secret": hook["secret"], **NO_KEY}
    resp = await post_json(gateway, path, [conversion(), conversion(1)], headers=secret)
    batch_id = (await resp.json())["batch_id"]
    before = await status_by_key(gateway, batch_id)

    resp = await gateway.delete(path)
    assert resp.status == 204 and await resp.read() == b""
    after = await status_by_key(gateway, batch_id)
    assert after == before and after["total"] == 2
    row = await pool.fetchrow("SELECT webhook_id, status FROM batches WHERE id = $1", uuid.UUID(batch_id))
    assert row["webhook_id"] is None and row["status"] == "accepted"
    assert await listed(gateway, hook) is None and await listed(gateway, other) is not None

    # the secret-authenticated endpoints now answer 404 (the gateway's cache forgot the webhook at once)
    for resp in (
        await post_json(gateway, path, [conversion()], headers=secret),
        await post_json(gateway, f"{path}/{hook['secret']}", [conversion()], headers=NO_KEY),
        await post_json(gateway, path, [conversion()], params={"secret": hook["secret"]}, headers=NO_KEY),
        await gateway.get(f"{path}/status", params={"batch_id": batch_id}, headers=secret),
    ):
        assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}
    for method, url in (("DELETE", path), ("PATCH", path), ("POST", f"{path}/rotate-secret")):
        resp = await gateway.request(method, url, json={"name": "x"})
        assert resp.status == 404 and await resp.json() == {"detail": "Webhook not found"}, method
    resp = await gateway.delete(path, headers=NO_KEY)
    assert resp.status == 401


async def test_rotate_returns_the_new_url(gateway, settings):
    amo = await create(gateway, source="amocrm", mapping=AMO_MAPPING)
    resp = await gateway.post(f"{BASE}/{amo['webhook_id']}/rotate-secret")
    rotated = await resp.json()
    base = f"{settings.public_base_url}{BASE}/{amo['webhook_id']}"
    assert set(rotated) == {"webhook_id", "secret", "url"}
    assert rotated["url"] == f"{base}/{rotated['secret']}" and rotated["secret"] != amo["secret"]
    resp = await gateway.post(f"{BASE}/{amo['webhook_id']}/{amo['secret']}", data=AMO_BODY, headers=FORM)
    assert resp.status == 403
    resp = await gateway.post(f"{BASE}/{amo['webhook_id']}/{rotated['secret']}", data=AMO_BODY, headers=FORM)
    assert resp.status == 200  # authenticated by the new URL

    plain = await create(gateway)
    rotated = await (await gateway.post(f"{BASE}/{plain['webhook_id']}/rotate-secret")).json()
    assert rotated["url"] == plain["url"]
    resp = await post_json(
        gateway, f"{BASE}/{plain['webhook_id']}/{plain['secret']}", [conversion()], headers=NO_KEY
    )
    assert resp.status == 403
    resp = await post_json(
        gateway, f"{BASE}/{plain['webhook_id']}/{rotated['secret']}", [conversion()], headers=NO_KEY
    )
    assert resp.status == 200


async def test_rekey_reencrypts_the_bitrix24_secrets(gateway, pool):
    await create(
        gateway,
        source="bitrix24",
        mapping=BITRIX_MAPPING,
        application_token=APP_TOKEN,
        bitrix_webhook_url=BITRIX_URL,
    )
    report = await rekey(pool, TokenCipher(SecretStr("new-key,test-encryption-key")))
    assert report.rekeyed["webhooks"] == 3 and report.unreadable == 0  # the Metrika token and both secrets
    new_only = TokenCipher(SecretStr("new-key"))
    row = await pool.fetchrow("SELECT * FROM webhooks")
    assert new_only.decrypt(row["token_enc"]) == GOOD_TOKEN
    assert new_only.decrypt(row["application_token_enc"]) == APP_TOKEN
    assert new_only.decrypt(row["bitrix_webhook_url_enc"]) == BITRIX_URL


def test_a_secret_in_the_path_is_masked_in_log_lines():
    secret = "Zm9vYmFyYmF6cXV4LXNlY3JldC1zZWdtZW50LTQzY2g"
    path = f"{BASE}/{uuid.uuid4()}/{secret}"
    request = make_mocked_request("POST", path, match_info={"webhook_id": "x", "secret": secret})
    shown = shown_path(request)
    assert secret not in shown and shown == path.replace(secret, "***")
    plain = make_mocked_request("POST", f"{BASE}/abc", match_info={"webhook_id": "abc"})
    assert shown_path(plain) == f"{BASE}/abc"
