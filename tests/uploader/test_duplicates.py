"""A conversion is sent once: the same conversion (counter, target, identifier, and purchase id or else
time) in a later row or batch is reported as `duplicate`, never uploaded again."""

from __future__ import annotations

import datetime as dt

from sandbox.app import CONVERSIONS, VISITORS
from tests.conftest import wait_for
from uploader.main import main as uploader_main

COUNTER = 9191
WHEN = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)


def _row(client_id: str, *, minutes: int = 0, **extra):
    return {
        "client_id": client_id,
        "target": "purchase",
        "date_time": (WHEN + dt.timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


async def _hook(gateway):
    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token"}
    )
    return await resp.json()


async def _final(gateway, hook, rows):
    headers = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}", json={"conversions": rows}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    batch_id = (await resp.json())["batch_id"]

    async def done():
        resp = await gateway.get(
            f"/webhook/offline-conversions/{hook['webhook_id']}/status",
            params={"batch_id": batch_id},
            headers=headers,
        )
        body = await resp.json()
        return body if body["status"] in ("completed", "error") else None

    return await wait_for(done)


def _sent(sandbox) -> list[tuple[str, str]]:
    return sorted(
        (line.row["ClientId"], line.row["DateTime"]) for line in sandbox.app[CONVERSIONS].lines_for(COUNTER)
    )


async def test_the_same_conversion_in_two_batches_and_twice_in_one_is_sent_once(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["1", "2", "3"])
    hook = await _hook(gateway)
    run_service(uploader_main, settings)
    first = await _final(gateway, hook, [_row("1"), _row("2"), _row("2")])
    assert first["status"] == "completed" and first["processed"] == 2 and first["total"] == 3
    assert first["errors"] == [{"index": 2, "reason": first["errors"][0]["reason"], "status": "duplicate"}]
    assert "duplicate of row 1" in first["errors"][0]["reason"]

    # a CRM sending again, with one new conversion and one at another time for the same visitor
    second = await _final(gateway, hook, [_row("1"), _row("3"), _row("1", minutes=5)])
    assert second["status"] == "completed" and second["processed"] == 2
    assert [(e["index"], e.get("status")) for e in second["errors"]] == [(0, "duplicate")]

    # nothing new at all: completed, nothing sent
    third = await _final(gateway, hook, [_row("2"), _row("3")])
    assert third["status"] == "completed" and third["processed"] == 0
    assert [e.get("status") for e in third["errors"]] == ["duplicate", "duplicate"]

    sent = _sent(sandbox)
    assert len(sent) == len(set(sent)) == 4  # 1, 2, 3 and 1 five minutes later: each once


async def test_a_purchase_id_tells_conversions_apart_whatever_their_time(
    gateway, settings, sandbox, run_service
):
    sandbox.app[VISITORS].register(COUNTER, ["7"])
    hook = await _hook(gateway)
    run_service(uploader_main, settings)
    body = await _final(
        gateway,
        hook,
        [_row("7", purchase_id="A-1"), _row("7", purchase_id="A-2"), _row("7", minutes=3, purchase_id="A-1")],
    )
    assert body["processed"] == 2
    assert [(e["index"], e.get("status")) for e in body["errors"]] == [(2, "duplicate")]
    assert len(_sent(sandbox)) == 2
