"""The checks of a webhook request that need only its path and header: made before its body is read.

A submission is answered 404 (unknown webhook), 403 (missing or wrong secret, deactivated webhook) or 429
(over its rate) before a byte of its body is read, so that nobody without the secret can make the gateway
read and parse 10 MB, and a sender over its limit costs no body either.

Trade-off: each webhook's secret digest and active flag are cached for CACHE_TTL_S in this process, so
the hot path (the right secret, an active webhook) adds no round trip to the one statement per group that
stores the batches (gateway.intake); that statement checks secret, state and rate again, atomically, and
its verdict is the one that counts. A cache entry can therefore only cost a wasted body read, never a
wrong answer: a request the cache would refuse (unknown webhook, wrong secret) is looked up afresh, in
case the webhook was created or its secret rotated on another replica; a webhook deactivated on another
replica is refused by the statement, and one reactivated there is refused here for at most CACHE_TTL_S.
A rotation or change made through this process forgets the entry at once. The fresh look-ups that a
refusal costs are bounded by the failed-authentication limit per client address (gateway.limits).

The 429 before the body: once the statement said a webhook is full, no slot frees before the time it
gave (other replicas can only take slots, not free them), so until then a request is refused from memory.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import time
import uuid

import asyncpg

from gateway.limits import AuthFailures
from shared import errors
from shared.db import webhooks

SECRET_HEADER = "X-Webhook-Secret"
CACHE_TTL_S = 2.0
_MAX_ENTRIES = 10_000


def secret_digest(secret: str) -> bytes:
    # a header aiohttp could not decode as UTF-8 keeps its bytes as surrogates: hash those bytes
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class WebhookGuard:
    def __init__(self, pool: asyncpg.Pool, failures: AuthFailures, rate_per_minute: int) -> None:
        self._pool = pool
        self._failures = failures
        self._rate = rate_per_minute
        self._entries: dict[uuid.UUID, tuple[float, asyncpg.Record | None]] = {}
        self._loading: dict[uuid.UUID, asyncio.Future[asyncpg.Record | None]] = {}
        self._full_until: dict[uuid.UUID, float] = {}

    async def admit(self, webhook_id: uuid.UUID, given: str, address: str) -> asyncpg.Record:
        """Let a submission's body be read (the webhook's AUTH record): 404, 403 or 429 otherwise (in that
        order)."""
        webhook = await self.authenticate(webhook_id, given, address)
        if not webhook["is_active"]:
            raise errors.Forbidden("Webhook is deactivated")
        until = self._full_until.get(webhook_id)
        if until is not None:
            left = until - time.monotonic()
            if left > 0:
                raise self.too_many(left)
            del self._full_until[webhook_id]
        return webhook

    async def authenticate(self, webhook_id: uuid.UUID, given: str, address: str) -> asyncpg.Record:
        """The webhook's secret_hash and is_active if `given` is its secret; 404 or 403 otherwise."""
        digest = secret_digest(given)
        cached = self._entries.get(webhook_id)
        if cached is not None and cached[0] > time.monotonic() and _matches(cached[1], given, digest):
            assert cached[1] is not None
            return cached[1]
        self._failures.check(address)
        webhook = await self._load(webhook_id)
        if not _matches(webhook, given, digest):
            self._failures.add(address)
            if webhook is None:
                raise errors.NotFound("Webhook not found")
            if not given:
                raise errors.Forbidden(
                    f"Missing webhook secret: send it in the {SECRET_HEADER} header (or in the webhook's URL)"
                )
            raise errors.Forbidden("Invalid webhook secret")
        assert webhook is not None
        return webhook

    def full(self, webhook_id: uuid.UUID, seconds_left: float) -> errors.TooManyRequests:
        """Remember that the webhook has no free slot for `seconds_left`; the 429 to answer."""
        self._full_until[webhook_id] = time.monotonic() + seconds_left
        return self.too_many(seconds_left)

    def too_many(self, seconds_left: float) -> errors.TooManyRequests:
        retry_after = max(1, math.ceil(seconds_left))
        return errors.TooManyRequests(
            f"Rate limit exceeded: at most {self._rate} requests per minute per webhook; "
            f"retry in {retry_after} s",
            retry_after,
        )

    def forget(self, webhook_id: uuid.UUID) -> None:
        """The webhook changed (secret rotated, edited, deleted): look it up afresh next time."""
        self._entries.pop(webhook_id, None)
        self._loading.pop(webhook_id, None)  # a look-up under way no longer fills the cache

    async def _load(self, webhook_id: uuid.UUID) -> asyncpg.Record | None:
        """One look-up at a time per webhook; the requests that arrive meanwhile share it."""
        loading = self._loading.get(webhook_id)
        if loading is None:
            loading = asyncio.ensure_future(webhooks.auth(self._pool, webhook_id))
            self._loading[webhook_id] = loading
            loading.add_done_callback(functools.partial(self._loaded, webhook_id))
        return await asyncio.shield(loading)  # a caller that leaves does not cancel the others' look-up

    def _loaded(self, webhook_id: uuid.UUID, loading: asyncio.Future[asyncpg.Record | None]) -> None:
        failed = loading.cancelled() or loading.exception() is not None  # (marks the exception retrieved)
        if self._loading.get(webhook_id) is not loading:
            return  # forgotten while under way
        del self._loading[webhook_id]
        if failed:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
        self._entries[webhook_id] = (time.monotonic() + CACHE_TTL_S, loading.result())


def _matches(webhook: asyncpg.Record | None, given: str, digest: bytes) -> bool:
    # digests have one length whatever was sent, and compare_digest takes the same time wherever they differ
    return webhook is not None and bool(given) and hmac.compare_digest(digest, bytes(webhook["secret_hash"]))
