"""Rate limits of the gateway: failed authentication per client address, management calls per API key.

Failed authentication (a missing or wrong API key, an unknown webhook, a wrong webhook secret) is counted
per client address, in this process: an address with FAILED_AUTH_PER_MINUTE failures in the last 60 s is
answered 429 before its credentials are even looked at, until its oldest failure is a minute old. Per
address rather than per webhook or key, so that someone guessing cannot lock the rightful sender out of its
own webhook (unless they share an address, e.g. behind one proxy: the gateway reads the peer address, never
a spoofable X-Forwarded-For). Per process, because its job is to bound what unauthenticated traffic costs
each replica (look-ups, compares) and to make guessing API keys slow; secrets are 256-bit random anyway.

Management calls are counted per API key in Postgres (shared/db/rates.py), at most API_RATE_PER_MINUTE in
any 60 s across every replica: a budget per client should not grow with the number of replicas behind a
load balancer, and each management call already talks to Postgres, so one small upsert more is cheap.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque

import asyncpg

from shared import errors
from shared.db import rates

FAILED_AUTH_PER_MINUTE = 20
# addresses remembered at most; past it, those whose failures are all a minute old are forgotten
_MAX_ADDRESSES = 10_000


class AuthFailures:
    """The failed authentication attempts of each client address over the last 60 s (in this process)."""

    def __init__(self, per_minute: int = FAILED_AUTH_PER_MINUTE) -> None:
        self._per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}

    def check(self, address: str) -> None:
        """429 while `address` has used up its failed attempts of the last 60 s."""
        failures = self._failures.get(address)
        if failures is None or len(failures) < self._per_minute:
            return
        wait = failures[0] + rates.WINDOW_S - time.monotonic()
        if wait > 0:
            raise errors.TooManyRequests(
                f"Too many failed authentication attempts from your address; retry in {math.ceil(wait)} s",
                max(1, math.ceil(wait)),
            )

    def add(self, address: str) -> None:
        if len(self._failures) >= _MAX_ADDRESSES and address not in self._failures:
            self._forget_old()
        failures = self._failures.setdefault(address, deque(maxlen=self._per_minute))
        failures.append(time.monotonic())

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - rates.WINDOW_S
        self._failures = {a: f for a, f in self._failures.items() if f and f[-1] > cutoff}
        if len(self._failures) >= _MAX_ADDRESSES:  # a flood of fresh addresses: start over
            self._failures.clear()


async def take_api_call(pool: asyncpg.Pool, api_key: bytes, per_minute: int) -> None:
    """Count one management call of `api_key`; 429 past `per_minute` calls in any 60 s."""
    subject = "api-key:" + hashlib.sha256(api_key).hexdigest()  # never the key itself
    verdict = await rates.take(pool, subject, per_minute)
    if not verdict.granted:
        raise errors.TooManyRequests(
            f"Rate limit exceeded: at most {per_minute} management requests per minute per API key; "
            f"retry in {verdict.retry_after_s} s",
            verdict.retry_after_s,
        )
