"""The uploader's handler called directly on stored batches, against the Metrika sandbox."""

from __future__ import annotations

import datetime as dt
import uuid

import aiohttp
import pytest

from sandbox.app import CONVERSIONS, VISITORS
from shared import errors
from shared.crypto import TokenCipher
from shared.schemas import UploadBatches
from tests.conftest import override
from uploader.deps import Deps
from uploader.handler import handle_upload_batches

COUNTER = 6262
HOUR_AGO = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()


async def _webhook_batch(gateway, client_id: str) -> uuid.UUID:
    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token"}
    )
    hook = await resp.json()
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}",
        json={"conversions": [{"client_id": client_id, "target": "purchase", "date_time": HOUR_AGO}]},
        headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
    )
    assert resp.status == 200, await resp.text()
    return uuid.UUID((await resp.json())["batch_id"])


async def test_a_message_of_several_batches_and_its_redelivery(gateway, settings, sandbox, pool):
    sandbox.app[VISITORS].register(COUNTER, ["111", "222"])
    first, second = await _webhook_batch(gateway, "111"), await _webhook_batch(gateway, "222")
    missing = uuid.uuid4()
    async with aiohttp.ClientSession() as session:
        deps = Deps(
            pool=pool,
            session=session,
            cipher=TokenCipher(settings.token_encryption_key),
            settings=override(settings, upload_poll_s=30),
        )
        # a batch that does not exist fails the message, but only after the others had their turn
        with pytest.raises(errors.Permanent, match=str(missing)):
            await handle_upload_batches(UploadBatches(batch_ids=[first, missing, second]), deps)
        statuses = "SELECT status, updated_at FROM batches WHERE id = ANY($1::uuid[]) ORDER BY id"
        before = [tuple(r) for r in await pool.fetch(statuses, [first, second])]
        assert [status for status, _ in before] == ["uploaded"] * 2
        # the message again (a redelivery): nothing is sent twice, and no status moves, not even for a
        # moment back to pending (updated_at would show it)
        await handle_upload_batches(UploadBatches(batch_ids=[first, second]), deps)
        assert [tuple(r) for r in await pool.fetch(statuses, [first, second])] == before
    sent = sorted(line.row["ClientId"] for line in sandbox.app[CONVERSIONS].lines_for(COUNTER))
    assert sent == ["111", "222"]
