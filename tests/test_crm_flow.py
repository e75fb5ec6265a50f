"""amoCRM/Kommo and Bitrix24 webhooks end to end, called as the CRMs call them (form bodies, the secret in
the URL): gateway -> Postgres + RabbitMQ -> uploader (mapping, Bitrix24 look-up) -> the Metrika sandbox."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from urllib.parse import urlsplit

from sandbox.app import BITRIX, CONVERSIONS, FAULTS, VISITORS
from tests.conftest import wait_for
from tests.shared.crm_bodies import AMO_ACCOUNT, FORM, amo_body, amo_custom_fields, amo_lead, bitrix_body
from uploader.main import main as uploader_main

COUNTER = 6464
CLIENT_ID = "175085690441127503"  # the _YM_UID of amo_custom_fields
RECENT = str(int(time.time()) - 3600)
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"  # the one bitrix_body sends
BITRIX_CODE = "b24sandboxcode01"


async def _create(gateway, source: str, mapping: dict, **extra) -> dict:
    body = {
        "name": source,
        "counter_id": COUNTER,
        "token": "sandbox-token",
        "source": source,
        "mapping": mapping,
    }
    resp = await gateway.post("/webhook/offline-conversions", json={**body, **extra})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _post(gateway, hook: dict, body: bytes, content_type: str = FORM, path: str | None = None):
    """POST as the CRM does, to the webhook's url (its path, on the test gateway): no API key, no header."""
    headers = {"Content-Type": content_type, "Authorization": ""}
    return await gateway.post(path or urlsplit(hook["url"]).path, data=body, headers=headers)


async def _final(gateway, batch_id: str) -> dict:
    async def done():
        resp = await gateway.get(f"/conversions/{batch_id}/status")
        body = await resp.json()
        return body if body["status"] in ("processed", "error") else None

    return await wait_for(done)


def _sent(sandbox) -> list[str]:
    return sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))


async def test_an_amocrm_status_hook_with_several_leads_uploads_its_conversions_once(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, [CLIENT_ID])
    hook = await _create(
        gateway, "amocrm", {"target_by_status": {"142": "purchase"}, "client_id_field": "_YM_UID"}
    )
    assert hook["url"].endswith(f"/{hook['secret']}")
    body = amo_body(
        amo_lead("status", 0, "501", updated_at=RECENT),
        amo_custom_fields("status", 0),
        amo_lead("status", 1, "502", status_id="143", updated_at=RECENT),  # no rule for 143
        amo_custom_fields("status", 1),
        amo_lead("status", 2, "503", updated_at=RECENT),  # no _YM_UID field
        AMO_ACCOUNT,
    )
    resp = await _post(gateway, hook, body)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["status"] == "accepted" and answer["events"] == 3
    run_service(uploader_main, settings)

    status = await _final(gateway, answer["batch_id"])
    assert status["status"] == "processed" and status["total"] == 3 and status["processed"] == 1
    ignored = {e["index"]: e["reason"] for e in status["errors"] if e.get("status") == "ignored"}
    assert "143" in ignored[1] and "no identifier" in ignored[2]
    assert _sent(sandbox) == [CLIENT_ID]

    # amoCRM sends the same hook again: every event is a duplicate, nothing is uploaded again
    resp = await _post(gateway, hook, body)
    again = await _final(gateway, (await resp.json())["batch_id"])
    assert again["status"] == "processed" and again["processed"] == 0
    # the lead that converted is a duplicate; the two ignored ones are ignored again
    assert [(e["index"], e.get("status")) for e in again["errors"]] == [
        (0, "duplicate"),
        (1, "ignored"),
        (2, "ignored"),
    ]
    assert _sent(sandbox) == [CLIENT_ID]


async def test_a_malformed_crm_body_is_a_4xx_and_kept_for_inspection(gateway, pool):
    hook = await _create(
        gateway, "amocrm", {"target_by_status": {"142": "purchase"}, "client_id_field": "_YM_UID"}
    )
    resp = await _post(gateway, hook, b"leads[status][0][id]=1", content_type="application/json")
    assert resp.status == 400 and "amoCRM" in (await resp.json())["detail"]
    kept = await pool.fetchrow("SELECT body, problem, batch_id FROM crm_requests")
    assert bytes(kept["body"]) == b"leads[status][0][id]=1" and kept["problem"] and kept["batch_id"] is None
    wrong = urlsplit(hook["url"]).path.rsplit("/", 1)[0] + "/wrong-secret"
    resp = await _post(gateway, hook, b"x", path=wrong)
    assert resp.status == 403


async def test_a_bitrix24_deal_update_is_looked_up_and_uploaded_despite_rest_failures(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, [CLIENT_ID])
    modified = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    sandbox.app[BITRIX].put_deals(
        BITRIX_CODE,
        [{"ID": 759, "STAGE_ID": "WON", "OPPORTUNITY": "1500.00", "CURRENCY_ID": "RUB",
          "UF_CRM_CID": CLIENT_ID, "DATE_MODIFY": modified}],
    )  # fmt: skip
    portal = f"{settings.metrika_api_url}/rest/1/{BITRIX_CODE}/"
    mapping = {"target_by_status": {"WON": "purchase"}, "client_id_field": "UF_CRM_CID"}
    hook = await _create(gateway, "bitrix24", mapping, application_token=APP_TOKEN, bitrix_webhook_url=portal)
    # the portal answers 503 twice before it gives the deal
    sandbox.app[FAULTS].add(r"/rest/1/", 503, times=2)
    resp = await _post(gateway, hook, bitrix_body(ts=RECENT))
    assert resp.status == 200, await resp.text()
    run_service(uploader_main, settings)
    status = await _final(gateway, (await resp.json())["batch_id"])
    assert status["status"] == "processed" and status["processed"] == 1, status
    assert _sent(sandbox) == [CLIENT_ID]
    line = sandbox.app[CONVERSIONS].lines_for(COUNTER)[0]
    assert line.row["Target"] == "purchase" and line.row["Price"] == "1500"

    # the wrong application token is refused, and nothing is stored for it
    forged = bitrix_body(ts=RECENT).replace(APP_TOKEN.encode(), b"0" * 32)
    resp = await _post(gateway, hook, forged)
    assert resp.status == 403


async def test_a_replay_through_a_fixed_mapping_sends_what_was_ignored_and_nothing_twice(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, [CLIENT_ID, "2"])
    hook = await _create(
        gateway, "amocrm", {"target_by_status": {"142": "purchase"}, "client_id_field": "_YM_UID"}
    )
    body = amo_body(
        amo_lead("status", 0, "601", updated_at=RECENT),
        amo_custom_fields("status", 0),
        amo_lead("status", 1, "602", status_id="143", updated_at=RECENT),
        [
            ("leads[status][1][custom_fields][0][code]", "_YM_UID"),
            ("leads[status][1][custom_fields][0][values][0][value]", "2"),
        ],
        AMO_ACCOUNT,
    )
    resp = await _post(gateway, hook, body)
    run_service(uploader_main, settings)
    first = await _final(gateway, (await resp.json())["batch_id"])
    assert first["processed"] == 1 and _sent(sandbox) == [CLIENT_ID]  # 143 had no rule: ignored

    mapping = {"target_by_status": {"142": "purchase", "143": "call"}, "client_id_field": "_YM_UID"}
    resp = await gateway.patch(
        f"/webhook/offline-conversions/{hook['webhook_id']}", json={"mapping": mapping}
    )
    assert resp.status == 200
    replay = f"/webhook/offline-conversions/{hook['webhook_id']}/replay"
    resp = await gateway.post(replay, json={"dry_run": True})
    dry = await resp.json()
    assert resp.status == 200 and dry["requests"] == 1 and dry["events"] == 2 and dry["conversions"] == 2
    assert _sent(sandbox) == [CLIENT_ID]  # a dry run sends nothing

    resp = await gateway.post(replay, json={"from": "2000-01-01T00:00:00Z"})
    assert resp.status == 202
    replayed = await _final(gateway, (await resp.json())["batch_ids"][0])
    assert replayed["processed"] == 1
    assert [(e["index"], e.get("status")) for e in replayed["errors"]] == [(0, "duplicate")]
    assert _sent(sandbox) == sorted([CLIENT_ID, "2"])  # the lead won before is not sent again

    resp = await gateway.post(f"/webhook/offline-conversions/{uuid.uuid4()}/replay", json={})
    assert resp.status == 404
