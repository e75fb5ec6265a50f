"""Yandex's request quotas: requests per second per IP (Logs API: 10, other Management API calls: 30)
and parallel requests per token (3)."""

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

    def __init__(
        self,
        rps: int,
        max_parallel: int,
        clock: Callable[[], float] = time.monotonic,
        management_rps: int = 0,
    ) -> None:
        self.rps = rps
        self.management_rps = management_rps
        self.max_parallel = max_parallel
        self._clock = clock
        self._recent: defaultdict[tuple[bool, str], deque[float]] = defaultdict(deque)
        self._running: defaultdict[str, int] = defaultdict(int)

    def check_rate(self, ip: str, logs_api: bool = True) -> None:
        """Count one request from ``ip`` against the Logs API rate (``rps``) or the rate of the other
        Management API calls (``management_rps``); raise 429 if the last second already holds that many."""
        limit = self.rps if logs_api else self.management_rps
        if limit <= 0:
            return
        now = self._clock()
        recent = self._recent[(logs_api, ip)]
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= limit:
            raise ApiError(
                429, "quota_requests_by_ip", f"Quota exceeded: more than {limit} requests per second by IP"
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
        quotas.check_rate(request.remote or "unknown", logs_api=LOGS_API_PATH.match(request.path) is not None)
        quotas.acquire(token)
        try:
            return await handler(request)
        finally:
            quotas.release(token)

    return middleware
