"""Yandex's request quotas: requests per second per IP and parallel requests per token."""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.auth import TOKEN
from sandbox.errors import ApiError

__all__ = ["LOGS_API_PATH", "Quotas", "quotas_middleware"]

#: paths counted against the Logs API per-IP rate
LOGS_API_PATH = re.compile(r"^/management/v1/counter/[^/]+/logrequest")


class Quotas:
    """In-memory quota book-keeping; a limit of 0 or less disables that quota."""

    def __init__(self, rps: int, max_parallel: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rps = rps
        self.max_parallel = max_parallel
        self._clock = clock
        self._recent: defaultdict[str, deque[float]] = defaultdict(deque)
        self._running: defaultdict[str, int] = defaultdict(int)

    def check_rate(self, ip: str) -> None:
        """Count one request from ``ip``; raise 429 if the last second already holds ``rps``."""
        if self.rps <= 0:
            return
        now = self._clock()
        recent = self._recent[ip]
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= self.rps:
            raise ApiError(
                429, "quota_requests_by_ip", f"Quota exceeded: more than {self.rps} requests per second by IP"
            )
        recent.append(now)

    def acquire(self, token: str) -> None:
        if 0 < self.max_parallel <= self._running[token]:
            raise ApiError(
                429,
                "quota_parallel_requests",
                f"Quota exceeded: more than {self.max_parallel} parallel requests by user",
            )
        self._running[token] += 1

    def release(self, token: str) -> None:
        self._running[token] -= 1
        if self._running[token] <= 0:
            del self._running[token]

    def running(self, token: str) -> int:
        return self._running.get(token, 0)


def quotas_middleware(quotas: Quotas) -> Middleware:
    """Must run after the auth middleware (needs the authenticated token)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.get(TOKEN)
        if token is None:
            return await handler(request)
        if LOGS_API_PATH.match(request.path):
            quotas.check_rate(request.remote or "unknown")
        quotas.acquire(token)
        try:
            return await handler(request)
        finally:
            quotas.release(token)

    return middleware
