"""A log of the API requests the sandbox received (method, path, query, status; never the token)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.faults import CONTROL_PREFIX

__all__ = ["RequestLog", "RequestRecord", "request_log_middleware"]

_SECRET_PARAMS = frozenset({"oauth_token", "token"})
#: the counter a Management or Logs API request is about
_COUNTER = re.compile(r"^/management/v1/counter/(\d+)(?:/|$)")
#: a Bitrix24 inbound-webhook code is a secret in the path: /rest/<user_id>/<code>/<method>
_WEBHOOK_CODE = re.compile(r"^(/rest/[^/]+/)[^/]+(/)")


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int
    time: float


class RequestLog:
    """The last ``limit`` requests, and per counter the requests in flight now and at most so far (the
    high-water mark shows whether clients kept to a parallel-requests limit)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.records: list[RequestRecord] = []
        self.in_flight: dict[int, int] = {}
        self.in_flight_max: dict[int, int] = {}

    def started(self, counter: int) -> None:
        now = self.in_flight[counter] = self.in_flight.get(counter, 0) + 1
        self.in_flight_max[counter] = max(self.in_flight_max.get(counter, 0), now)

    def ended(self, counter: int) -> None:
        self.in_flight[counter] -= 1
        if self.in_flight[counter] <= 0:
            del self.in_flight[counter]

    def append(self, record: RequestRecord) -> None:
        self.records.append(record)
        if len(self.records) > self.limit:
            del self.records[: len(self.records) - self.limit]

    def find(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Records with this method and a path ending with ``path``."""
        return [
            r
            for r in self.records
            if (method is None or r.method == method) and (path is None or r.path.endswith(path))
        ]

    def clear(self) -> None:
        self.records.clear()
        self.in_flight_max = dict(self.in_flight)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.records]

    def in_flight_json(self) -> dict[str, dict[str, int]]:
        return {
            "in_flight": {str(c): n for c, n in self.in_flight.items()},
            "in_flight_max": {str(c): n for c, n in self.in_flight_max.items()},
        }


def request_log_middleware(request_log: RequestLog) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        about = _COUNTER.match(request.path)
        counter = int(about.group(1)) if about else None
        if counter is not None:
            request_log.started(counter)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # client went away
            raise
        finally:
            if counter is not None:
                request_log.ended(counter)
            query = {k: v for k, v in request.query.items() if k.lower() not in _SECRET_PARAMS}
            path = _WEBHOOK_CODE.sub(r"\1***\2", request.path)
            request_log.append(RequestRecord(request.method, path, query, status, time.time()))

    return middleware
