"""CRM webhook bodies are kept CRM_RETENTION_DAYS for replays, then the uploader's sweeper forgets them."""

from __future__ import annotations

import uuid

import aiohttp

from shared.crypto import TokenCipher
from uploader.deps import Deps
from uploader.sweeper import sweep_once


async def test_bodies_past_their_retention_are_forgotten_and_recent_or_unmapped_ones_kept(settings, pool):
    insert = """
    INSERT INTO crm_requests (batch_id, body, received_at, mapped_at)
    VALUES ($1, 'x', now() - make_interval(days => $2), CASE WHEN $3 THEN now() END)
    """
    old_mapped, recent, old_unmapped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await pool.execute(insert, old_mapped, 40, True)
    await pool.execute(insert, recent, 3, True)
    await pool.execute(insert, old_unmapped, 40, False)  # its batch has not been mapped yet: kept
    async with aiohttp.ClientSession() as session:
        deps = Deps(
            pool=pool, session=session, cipher=TokenCipher(settings.token_encryption_key), settings=settings
        )

        async def publish(batch_ids: list[uuid.UUID]) -> None:
            raise AssertionError("nothing to re-queue")

        await sweep_once(deps, publish)
    left = {row["batch_id"] for row in await pool.fetch("SELECT batch_id FROM crm_requests")}
    assert left == {recent, old_unmapped}
