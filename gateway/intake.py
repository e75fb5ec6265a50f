"""The gateway's hot-path round trips, shared by the requests that arrive together.

Webhook senders fire many small requests at once. Each request still gets its own checks and its own
answer, but the webhook lookup with its rate count, and the store of batch + rows + outbox message, run
as one statement per group of concurrent requests (see shared.coalesce): one round trip and one commit
for the group instead of one per request, and one RabbitMQ message naming the group's batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared import broker
from shared.coalesce import Coalescer
from shared.db import batches, webhooks
from shared.relay import OutboxRelay
from shared.schemas import UploadBatches

# batches per group: a group's rows travel as arrays in one statement, at most 1000 rows per batch
MAX_GROUP = 32


class Intake:
    def __init__(self, pool: asyncpg.Pool, lossy_pool: asyncpg.Pool, relay: OutboxRelay) -> None:
        self._pool = pool
        self._lossy_pool = lossy_pool
        self._relay = relay
        self.webhook = Coalescer(self._webhooks, max_items=MAX_GROUP)
        self.store = Coalescer(self._store, max_items=MAX_GROUP)

    async def close(self) -> None:
        await self.webhook.close()
        await self.store.close()

    async def _webhooks(self, requests: Sequence[tuple[uuid.UUID, bytes]]) -> list[asyncpg.Record | None]:
        # the rate count may be lost in a crash (a lossy commit): a few requests more, never data lost
        return await webhooks.get_and_count(self._lossy_pool, requests)

    async def _store(self, new: Sequence[batches.NewBatch]) -> list[None]:
        message = UploadBatches(batch_ids=[batch.id for batch in new]).model_dump(mode="json")
        outbox_id = await batches.store(self._pool, new, broker.CONVERSION_UPLOADS, message)
        # the answers promise only the committed rows: publishing (with confirms) need not delay them
        self._relay.publish_soon(outbox_id, broker.CONVERSION_UPLOADS, message)
        return [None] * len(new)
