"""GET /search: conversion rows of uploads and webhook batches found by client id, user id, yclid,
purchase id and CRM lead id (an amoCRM hook mapped by the real uploader); on real Postgres and RabbitMQ."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from tests.conftest import wait_for
from tests.gateway.test_listings import create_webhook, get_json, row, submit
from tests.shared.crm_bodies import AMO_ACCOUNT, FORM, amo_body, amo_custom_fields, amo_lead
from uploader.main import main as uploader_main

ITEM_KEYS = {
    "kind", "webhook_id", "row", "client_id", "user_id", "yclid", "purchase_id", "crm_id", "target", "status",
    "error", "created_at",
}  # fmt: skip
BIG_ID = str(2**64 - 1)  # an id past int64: compared as its exact text


async def test_each_key_finds_its_rows_across_uploads_and_webhook_batches(gateway):
    hook = await create_webhook(gateway)
    batch = await submit(
        gateway,
        hook,
        [
            row("111"),
            row(None, user_id="u-7", purchase_id="order-9"),
            row(None, yclid=BIG_ID),
            row("222", user_id="u-8"),  # the client id identifies it; the user id is not kept
        ],
    )
    resp = await gateway.post(
        "/conversions/single", json=row("111", token="t", counter=5, purchase_id="order-9")
    )
    upload = (await resp.json())["upload_id"]

    found = await get_json(gateway, "/search", client_id="111")
    assert found["pagination"] == {"total": 2, "limit": 100, "offset": 0, "has_more": False}
    first, second = found["data"]  # newest first: the upload came after the batch
    assert set(first) == ITEM_KEYS | {"upload_id"} and set(second) == ITEM_KEYS | {"batch_id"}
    assert (first["kind"], first["upload_id"], first["webhook_id"], first["row"]) == (
        "upload",
        upload,
        None,
        0,
    )
    assert (second["kind"], second["batch_id"], second["webhook_id"]) == (
        "webhook_batch",
        batch,
        hook["webhook_id"],
    )
    assert (second["client_id"], second["user_id"], second["target"], second["status"]) == (
        "111",
        None,
        "purchase",
        "pending",
    )
    assert second["created_at"].endswith("+00:00") and second["error"] is None

    user = (await get_json(gateway, "/search", user_id="u-7"))["data"]
    assert [(r["row"], r["user_id"], r["purchase_id"], r["crm_id"]) for r in user] == [
        (1, "u-7", "order-9", None)
    ]
    assert [r["row"] for r in (await get_json(gateway, "/search", yclid=BIG_ID))["data"]] == [2]
    assert (await get_json(gateway, "/search", yclid=BIG_ID[:-1]))["data"] == []
    purchases = (await get_json(gateway, "/search", purchase_id="order-9"))["data"]
    assert [r["kind"] for r in purchases] == ["upload", "webhook_batch"]
    # several filters must all match
    both = await get_json(gateway, "/search", client_id="111", purchase_id="order-9")
    assert [r["kind"] for r in both["data"]] == ["upload"]
    assert (await get_json(gateway, "/search", user_id="u-8"))["data"] == []
    assert (await get_json(gateway, "/search", crm_id="order-9"))["data"] == []  # not a CRM row

    page = await get_json(gateway, "/search", client_id="111", limit=1, offset=1)
    assert [r["kind"] for r in page["data"]] == ["webhook_batch"] and page["pagination"]["has_more"] is False


async def test_a_crm_lead_is_found_by_its_id_even_when_it_made_no_conversion(gateway, settings, run_service):
    resp = await gateway.post(
        "/webhook/offline-conversions",
        json={
            "name": "amo",
            "counter_id": 6464,
            "token": "sandbox-token",
            "source": "amocrm",
            "mapping": {"target_by_status": {"142": "purchase"}, "client_id_field": "_YM_UID"},
        },
    )
    hook = await resp.json()
    recent = str(int(time.time()) - 3600)
    body = amo_body(
        amo_lead("status", 0, "501", updated_at=recent),
        amo_custom_fields("status", 0),
        amo_lead("status", 1, "502", status_id="143", updated_at=recent),  # no rule for 143: ignored
        AMO_ACCOUNT,
    )
    resp = await gateway.post(
        urlsplit(hook["url"]).path, data=body, headers={"Content-Type": FORM, "Authorization": ""}
    )
    batch_id = (await resp.json())["batch_id"]
    run_service(uploader_main, settings)

    async def mapped():
        return (await get_json(gateway, "/search", crm_id="502"))["data"]

    (ignored,) = await wait_for(mapped, what="the CRM request mapped")
    assert (ignored["kind"], ignored["batch_id"], ignored["webhook_id"]) == (
        "webhook_batch",
        batch_id,
        hook["webhook_id"],
    )
    assert (ignored["row"], ignored["crm_id"], ignored["status"]) == (1, "502", "ignored")
    assert "143" in ignored["error"] and ignored["client_id"] is None
    (lead,) = (await get_json(gateway, "/search", crm_id="501"))["data"]
    assert (lead["row"], lead["client_id"], lead["purchase_id"]) == (0, "175085690441127503", "501")
