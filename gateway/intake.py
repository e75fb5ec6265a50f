"""The gateway's hot-path round trips, shared by the requests that arrive together.

Webhook senders fire many small requests at once. Each request still gets its own checks and its own
answer, but the webhook lookup, the rate count and the store of batch + rows + outbox message run as ONE
statement per group of concurrent requests (see shared.coalesce): one round trip and one commit for the
group instead of several per request. The groups committed within PUBLISH_WINDOW_S are announced in one
RabbitMQ message naming all their batches: a publish with confirms costs the gateway as much as several
requests do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from shared import broker, errors
from shared.coalesce import Coalescer
from shared.db import batches, webhooks
from shared.relay import OutboxRelay
from shared.schemas import UploadBatches

# batches per group: a group's rows travel in one statement, at most 1000 rows per batch
MAX_GROUP = 32
PUBLISH_WINDOW_S = 0.02
MAX_NOTICE_BATCHES = 64


class _UploadNotices:
    """The upload messages of committed groups, merged over PUBLISH_WINDOW_S into messages of up to
    MAX_NOTICE_BATCHES batches (so that several uploaders still share a burst)."""

    def __init__(self, relay: OutboxRelay) -> None:
        self._relay = relay
        self._pending: list[tuple[int, list[str]]] = []  # (outbox id, the batch ids its row names)
        self._sending: asyncio.Task[None] | None = None

    def add(self, outbox_id: int, message: dict[str, Any]) -> None:
        self._pending.append((outbox_id, list(message["batch_ids"])))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def close(self) -> None:
        if self._sending is not None:
            await self._sending

    async def _send(self) -> None:
        # until nothing is left: groups committed while a publish is under way go in the next one
        while self._pending:
            await asyncio.sleep(PUBLISH_WINDOW_S)
            while self._pending:
                await self._publish_next()

    async def _publish_next(self) -> None:
        """One message for the oldest rows, up to MAX_NOTICE_BATCHES batches (a row is never split).
        The batches are committed: the answers did not wait for this, and if it fails the rows stay to
        the relay's sweep."""
        outbox_ids: list[int] = []
        batch_ids: list[str] = []
        while self._pending and (
            not batch_ids or len(batch_ids) + len(self._pending[0][1]) <= MAX_NOTICE_BATCHES
        ):
            outbox_id, ids = self._pending.pop(0)
            outbox_ids.append(outbox_id)
            batch_ids += ids
        await self._relay.publish_now(outbox_ids, broker.CONVERSION_UPLOADS, {"batch_ids": batch_ids})


class Intake:
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay, webhook_rate_per_minute: int) -> None:
        self._pool = pool
        self._notices = _UploadNotices(relay)
        self._rate = webhook_rate_per_minute
        # A group that failed because Postgres is away fails every request in it (each is answered 503):
        # trying each request on its own would only wait for the same outage once per request.
        # -> webhooks.submit's record for this request
        self.submit = Coalescer(self._submit, max_items=MAX_GROUP, retry_alone=_not_unavailable)
        # a batch from the API (bulk, single) -> None once it is committed
        self.store = Coalescer(self._store, max_items=MAX_GROUP, retry_alone=_not_unavailable)

    async def close(self) -> None:
        await self.submit.close()
        await self.store.close()
        await self._notices.close()

    async def _submit(self, group: Sequence[webhooks.Submission]) -> list[asyncpg.Record]:
        answers = await webhooks.submit(self._pool, group, self._rate, broker.CONVERSION_UPLOADS)
        if answers and answers[0]["outbox_id"] is not None:
            self._notices.add(answers[0]["outbox_id"], answers[0]["message"])
        return answers

    async def _store(self, new: Sequence[batches.NewBatch]) -> list[None]:
        message = UploadBatches(batch_ids=[batch.id for batch in new]).model_dump(mode="json")
        outbox_id = await batches.store(self._pool, new, broker.CONVERSION_UPLOADS, message)
        self._notices.add(outbox_id, message)
        return [None] * len(new)


def _not_unavailable(exc: BaseException) -> bool:
    return not errors.is_unavailable(exc)
