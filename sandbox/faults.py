"""Fault injection: failing or slow responses (any path, so also one counter's), failed log processing,
counters whose log requests never finish preparing, forced evaluate answers, conversion uploads forced to
end as ``LINKAGE_FAILURE``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.errors import ApiError, default_error_type

__all__ = ["CONTROL_PREFIX", "Fault", "Faults", "faults_middleware"]

log = logging.getLogger(__name__)

#: the sandbox's own control endpoints; never faulted, authenticated, rate-limited or logged
CONTROL_PREFIX = "/sandbox/"


@dataclass
class Fault:
    """Requests whose path matches ``path`` (``re.search``) get ``status`` after ``delay`` seconds.

    ``status`` None (or below 400) only delays the real response. ``times`` None means forever.
    ``after`` True runs the real handler first (its effects happen), then delays and/or fails the
    response: the "Yandex did it but the answer was lost" case that exactly-once logic must survive.
    """

    path: re.Pattern[str]
    status: int | None = 503
    times: int | None = 1
    delay: float = 0.0
    method: str | None = None
    error_type: str | None = None
    message: str | None = None
    after: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path.search(path) is not None

    def error(self) -> ApiError | None:
        if self.status is None or self.status < 400:
            return None
        if self.message is not None:
            message = self.message
        elif self.status == 429:
            message = "Quota exceeded (sandbox fault)"
        elif self.status >= 500:
            message = "Backend error (sandbox fault)"
        else:
            message = "Sandbox fault"
        return ApiError(self.status, self.error_type or default_error_type(self.status), message)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path.pattern,
            "status": self.status,
            "times": self.times,
            "delay": self.delay,
            "method": self.method,
            "error_type": self.error_type,
            "message": self.message,
            "after": self.after,
            "hits": self.hits,
        }


class Faults:
    """The fault registry of one sandbox app (``app[FAULTS]``)."""

    def __init__(self) -> None:
        self.http: list[Fault] = []
        self.processing_failures = 0
        self.linkage_failures = 0
        self.evaluation: dict[str, Any] | None = None
        self.evaluation_times: int | None = None
        self.never_prepared: set[int] = set()

    def add(
        self,
        path: str,
        status: int | None = 503,
        *,
        times: int | None = 1,
        delay: float = 0.0,
        method: str | None = None,
        error_type: str | None = None,
        message: str | None = None,
        after: bool = False,
    ) -> Fault:
        fault = Fault(re.compile(path), status, times, delay, method, error_type, message, after)
        self.http.append(fault)
        log.info("sandbox fault added: %s", fault.to_json())
        return fault

    def fail_processing(self, count: int = 1) -> None:
        """The next ``count`` created log requests end as ``processing_failed``."""
        self.processing_failures += count

    def never_prepare(self, counters: Iterable[int]) -> None:
        """Log requests of these counters stay ``created`` (a huge day) until the faults are cleared."""
        self.never_prepared.update(counters)

    def fail_linkage(self, count: int = 1) -> None:
        """The next ``count`` offline-conversion uploads end as ``LINKAGE_FAILURE`` (nothing links)."""
        self.linkage_failures += count

    def override_evaluation(self, possible: bool, max_days: int, times: int | None = 1) -> None:
        """The next ``times`` evaluate calls answer this (None: until cleared)."""
        self.evaluation = {"possible": possible, "max_possible_day_quantity": max_days}
        self.evaluation_times = times

    def clear(self) -> None:
        self.http.clear()
        self.processing_failures = 0
        self.linkage_failures = 0
        self.evaluation = None
        self.evaluation_times = None
        self.never_prepared.clear()

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self.http:
            if fault.matches(method, path):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.http.remove(fault)
                return fault
        return None

    def take_processing_failure(self) -> bool:
        if self.processing_failures <= 0:
            return False
        self.processing_failures -= 1
        return True

    def take_linkage_failure(self) -> bool:
        if self.linkage_failures <= 0:
            return False
        self.linkage_failures -= 1
        return True

    def take_evaluation(self) -> dict[str, Any] | None:
        evaluation = self.evaluation
        if evaluation is not None and self.evaluation_times is not None:
            self.evaluation_times -= 1
            if self.evaluation_times <= 0:
                self.evaluation = self.evaluation_times = None
        return evaluation

    def to_json(self) -> dict[str, Any]:
        return {
            "http": [fault.to_json() for fault in self.http],
            "processing_failed": self.processing_failures,
            "linkage_failure": self.linkage_failures,
            "evaluation": self.evaluation,
            "evaluation_times": self.evaluation_times,
            "never_prepared": sorted(self.never_prepared),
        }


def faults_middleware(faults: Faults) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        fault = faults.take(request.method, request.path)
        if fault is None:
            return await handler(request)
        if fault.after:
            response = await handler(request)
            await asyncio.sleep(fault.delay)
            error = fault.error()
            if error is not None:
                raise error
            return response
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        error = fault.error()
        if error is not None:
            raise error
        return await handler(request)

    return middleware
