"""PurchaseId end to end: a conversion with only a purchase_id travels in its own PurchaseId file."""

from __future__ import annotations

import collections
import datetime as dt

from sandbox.app import CONVERSIONS
from tests.conftest import wait_for
from tests.test_conversions_flow import COUNTER, NOW, _final, _register, _row, _submit, _webhook
from uploader.main import main as uploader_main

WHEN = (NOW - dt.timedelta(hours=1)).isoformat()


def _by_upload(sandbox):
    """Received lines grouped by Metrika upload id: {upload_id: (client_id_type, [rows])}."""
    files: dict[int, tuple[str, list[dict[str, str]]]] = {}
    for line in sandbox.app[CONVERSIONS].lines_for(COUNTER):
        files.setdefault(line.upload_id, (line.client_id_type, []))[1].append(line.row)
    return files


async def test_single_conversion_with_only_a_purchase_id_completes(gateway, settings, sandbox, run_service):
    body = {
        "purchase_id": "order-1001",
        "target": "purchase",
        "date_time": WHEN,
        "price": 2500,
        "currency": "RUB",
    }
    resp = await gateway.post(
        "/conversions/single", json={**body, "counter": COUNTER, "token": "sandbox-token"}
    )
    assert resp.status == 200, await resp.text()
    upload_id = (await resp.json())["upload_id"]
    run_service(uploader_main, settings)

    async def final():
        status = await (await gateway.get(f"/conversions/{upload_id}/status")).json()
        return status if status["status"] in ("processed", "error") else None

    status = await wait_for(final, timeout=60)
    assert status["status"] == "processed", status
    assert (status["processed"], status["total"], status["errors"]) == (1, 1, None)
    files = _by_upload(sandbox)
    assert len(files) == 1
    [(id_type, rows)] = files.values()
    assert id_type == "PURCHASE_ID"
    assert rows == [
        {
            "PurchaseId": "order-1001",
            "Target": "purchase",
            "DateTime": str(int(dt.datetime.fromisoformat(WHEN).timestamp())),
            "Price": "2500",
            "Currency": "RUB",
        }
    ]


async def test_webhook_batch_mixing_purchase_ids_uploads_them_in_their_own_file(
    gateway, settings, sandbox, run_service, http
):
    hook = await _webhook(gateway)
    rows = [
        _row(0),
        {"purchase_id": "order-1", "target": "purchase", "date_time": WHEN, "price": 990.5},
        _row(1, purchase_id="order-2"),  # client_id wins: purchase_id stays an attribute
        {"purchase_id": 31337, "client_id": "", "target": "purchase", "date_time": WHEN},
    ]
    _register(sandbox, [rows[0]["client_id"], rows[2]["client_id"]])
    batch_id = await _submit(gateway, hook, rows)
    run_service(uploader_main, settings)

    body, _ = await _final(gateway, hook, batch_id)
    assert body["status"] == "completed", body
    assert (body["processed"], body["total"], body["errors"]) == (4, 4, None)

    files = _by_upload(sandbox)
    # each file received exactly once, one per identifier type, and both named in the batch's status
    assert sorted(body["metrika_upload_id"].split(",")) == sorted(str(upload_id) for upload_id in files)
    assert collections.Counter(id_type for id_type, _ in files.values()) == {"CLIENT_ID": 1, "PURCHASE_ID": 1}
    by_type = {id_type: file_rows for id_type, file_rows in files.values()}
    assert sorted(r["ClientId"] for r in by_type["CLIENT_ID"]) == sorted(
        [rows[0]["client_id"], rows[2]["client_id"]]
    )
    assert sorted(r["PurchaseId"] for r in by_type["PURCHASE_ID"]) == ["31337", "order-1"]
    # one identifier column per file, as Yandex documents: no PurchaseId beside a ClientId
    assert {tuple(r) for r in by_type["CLIENT_ID"]} == {
        ("ClientId", "Target", "DateTime", "Price", "Currency")
    }
    assert {tuple(r) for r in by_type["PURCHASE_ID"]} == {
        ("PurchaseId", "Target", "DateTime", "Price", "Currency")
    }
    assert next(r for r in by_type["PURCHASE_ID"] if r["PurchaseId"] == "order-1")["Price"] == "990.5"

    # the sandbox's HTTP record says the same
    async with http.get(sandbox.make_url("/sandbox/conversions"), params={"counter": str(COUNTER)}) as resp:
        assert resp.status == 200
        listed = (await resp.json())["lines"]
    assert collections.Counter(line["client_id_type"] for line in listed) == {
        "CLIENT_ID": 2,
        "PURCHASE_ID": 2,
    }
