"""The gateway's hot-path round trips, shared by the requests that arrive together.

Webhook senders fire many small requests at once. Each request still gets its own checks and its own
answer, but the webhook lookup, the rate count and the store of batch + rows + outbox message run as ONE
statement per group of concurrent requests (see shared.coalesce): one round trip and one commit for the
group instead of several per request. The groups committed within PUBLISH_WINDOW_S are announced in one
RabbitMQ message naming all their batches: a publish with confirms costs the gateway as much as several
requests do. Such a message carries the ids of all the requests whose batches it names (shared.logs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from shared import broker, errors, logs
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
        # (outbox id, the batch ids its row names, the ids of the requests that stored them)
        self._pending: list[tuple[int, list[str], list[str]]] = []
        self._sending: asyncio.Task[None] | None = None

    def add(self, outbox_id: int, message: dict[str, Any], headers: dict[str, Any]) -> None:
        request_ids = headers.get(logs.REQUEST_ID_HEADER, "").split(",")
        self._pending.append((outbox_id, list(message["batch_ids"]), request_ids))
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
        request_ids: list[str | None] = []
        while self._pending and (
            not batch_ids or len(batch_ids) + len(self._pending[0][1]) <= MAX_NOTICE_BATCHES
        ):
            outbox_id, ids, requests = self._pending.pop(0)
            outbox_ids.append(outbox_id)
            batch_ids += ids
            request_ids += requests
        message = {"batch_ids": batch_ids}
        headers = logs.message_headers(request_ids)
        await self._relay.publish_now(outbox_ids, broker.CONVERSION_UPLOADS, message, headers)


class Intake:
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay, webhook_rate_per_minute: int) -> None:
        self._pool = pool
        self._notices = _UploadNotices(relay)
        self._rate = webhook_rate_per_minute
        # A group that failed because Postgres is away fails every request in it (each is answered 503):
        # trying each request on its own would only wait for the same outage once per request.
        # Each item travels with the id of its request (the group runs in a task of its own).
        self._submit = Coalescer(self._submit_group, max_items=MAX_GROUP, retry_alone=_not_unavailable)
        self._store = Coalescer(self._store_group, max_items=MAX_GROUP, retry_alone=_not_unavailable)

    async def submit(self, submission: webhooks.Submission) -> asyncpg.Record:
        """-> webhooks.submit's record for this request"""
        return await self._submit((submission, logs.bound().get("request_id")))

    async def store(self, batch: batches.NewBatch) -> None:
        """A batch from the API (bulk, single) -> None once it is committed."""
        await self._store((batch, logs.bound().get("request_id")))

    async def close(self) -> None:
        await self._submit.close()
        await self._store.close()
        await self._notices.close()

    async def _submit_group(
        self, group: Sequence[tuple[webhooks.Submission, str | None]]
    ) -> list[asyncpg.Record]:
        submissions = [submission for submission, _ in group]
        headers = logs.message_headers([rid for s, rid in group if s.batch_id is not None])
        key = broker.CONVERSION_UPLOADS
        answers = await webhooks.submit(self._pool, submissions, self._rate, key, headers)
        if answers and answers[0]["outbox_id"] is not None:
            self._notices.add(answers[0]["outbox_id"], answers[0]["message"], headers)
        return answers

    async def _store_group(self, group: Sequence[tuple[batches.NewBatch, str | None]]) -> list[None]:
        new = [batch for batch, _ in group]
        headers = logs.message_headers([rid for _, rid in group])
        message = UploadBatches(batch_ids=[batch.id for batch in new]).model_dump(mode="json")
        outbox_id = await batches.store(self._pool, new, broker.CONVERSION_UPLOADS, message, headers)
        self._notices.add(outbox_id, message, headers)
        return [None] * len(new)


def _not_unavailable(exc: BaseException) -> bool:
    return not errors.is_unavailable(exc)
