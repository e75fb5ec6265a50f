"""The gateway's hot-path round trips, shared by the requests that arrive together.

Webhook senders fire many small requests at once. Each request still gets its own checks and its own
answer, but the webhook lookup, the rate count and the store of batch + rows + outbox message run as ONE
statement per group of concurrent requests (see shared.coalesce): one round trip and one commit for the
group instead of several per request, and one RabbitMQ message naming the group's batches.
"""

from __future__ import annotations

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
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay, webhook_rate_per_minute: int) -> None:
        self._pool = pool
        self._relay = relay
        self._rate = webhook_rate_per_minute
        # -> webhooks.submit's record for this request, None if its webhook does not exist
        self.submit = Coalescer(self._submit, max_items=MAX_GROUP)
        # a batch from the API (bulk, single) -> None once it is committed
        self.store = Coalescer(self._store, max_items=MAX_GROUP)

    async def close(self) -> None:
        await self.submit.close()
        await self.store.close()

    async def _submit(self, group: Sequence[webhooks.Submission]) -> list[asyncpg.Record | None]:
        answers = await webhooks.submit(self._pool, group, self._rate, broker.CONVERSION_UPLOADS)
        stored = answers[0] if answers else None
        if stored is not None and stored["outbox_id"] is not None:
            self._relay.publish_soon(stored["outbox_id"], broker.CONVERSION_UPLOADS, stored["message"])
        return [answer if answer["found"] else None for answer in answers]

    async def _store(self, new: Sequence[batches.NewBatch]) -> list[None]:
        message = UploadBatches(batch_ids=[batch.id for batch in new]).model_dump(mode="json")
        outbox_id = await batches.store(self._pool, new, broker.CONVERSION_UPLOADS, message)
        # the answers promise only the committed rows: publishing (with confirms) need not delay them
        self._relay.publish_soon(outbox_id, broker.CONVERSION_UPLOADS, message)
        return [None] * len(new)
