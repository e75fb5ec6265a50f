"""Log requests of the Logs API: parameter validation, lifecycle and the storage quota."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from itertools import count
from typing import Any

from sandbox.config import SandboxConfig
from sandbox.counters import Counters
from sandbox.days import DayStore
from sandbox.errors import ApiError
from sandbox.faults import Faults
from sandbox.parts import measure_parts
from sandbox.prepared import PreparedLog, PreparedLogs
from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS

__all__ = ["ATTRIBUTIONS", "SOURCES", "LogQuery", "LogRequest", "LogRequestStore", "parse_query"]

log = logging.getLogger(__name__)

SOURCES: dict[str, tuple[str, frozenset[str]]] = {
    "visits": ("ym:s:", frozenset(VISIT_FIELDS)),
    "hits": ("ym:pv:", frozenset(HIT_FIELDS)),
}
ATTRIBUTIONS = frozenset(
    {
        "FIRST",
        "LAST",
        "LASTSIGN",
        "LAST_YANDEX_DIRECT_CLICK",
        "CROSS_DEVICE_LAST_SIGNIFICANT",
        "CROSS_DEVICE_FIRST",
        "CROSS_DEVICE_LAST_YANDEX_DIRECT_CLICK",
        "CROSS_DEVICE_LAST",
        "AUTOMATIC",
    }
)
MAX_FIELDS_CHARS = 3000
MAX_PERIOD_DAYS = 366
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LogQuery:
    source: str
    date1: date
    date2: date
    fields: tuple[str, ...]
    attribution: str = "LASTSIGN"

    @property
    def days(self) -> int:
        return (self.date2 - self.date1).days + 1


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message)


def _required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise ApiError(400, "missing_parameter", f"Required parameter '{name}' is missing")
    return value


def _parse_date(query: Mapping[str, str], name: str) -> date:
    value = _required(query, name)
    try:
        if not _DATE.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(f"Wrong value of parameter '{name}': '{value}', expected YYYY-MM-DD") from None


def parse_query(query: Mapping[str, str], today: date) -> LogQuery:
    """Validate evaluate/create parameters the way Yandex does (400 on any violation)."""
    source = _required(query, "source")
    if source not in SOURCES:
        raise _invalid(f"Wrong value of parameter 'source': '{source}', allowed values: visits, hits")
    date1, date2 = _parse_date(query, "date1"), _parse_date(query, "date2")
    if date1 > date2:
        raise _invalid("Parameter date1 must not be later than date2")
    if date2 >= today:
        raise _invalid("Parameter date2 must be earlier than today: today's data is not available yet")
    if (date2 - date1).days + 1 > MAX_PERIOD_DAYS:
        raise _invalid("The requested period must not exceed one year")
    raw_fields = _required(query, "fields")
    if len(raw_fields) > MAX_FIELDS_CHARS:
        raise _invalid(f"Parameter 'fields' must not exceed {MAX_FIELDS_CHARS} characters")
    fields = tuple(f.strip() for f in raw_fields.split(","))
    prefix, known = SOURCES[source]
    for name in fields:
        if not name.startswith(prefix):
            raise _invalid(f"Field '{name}' does not belong to source {source} (expected {prefix}*)")
        if name not in known:
            raise _invalid(f"Unknown field '{name}' for source {source}")
    attribution = query.get("attribution", "LASTSIGN").strip().upper() or "LASTSIGN"
    if attribution not in ATTRIBUTIONS:
        raise _invalid(f"Wrong value of parameter 'attribution': '{attribution}'")
    return LogQuery(source, date1, date2, fields, attribution)


@dataclass
class LogRequest:
    request_id: int
    counter_id: int
    query: LogQuery
    created_at: float
    estimate: int
    will_fail: bool = False
    status: str = "created"
    size: int = 0
    part_sizes: list[int] = field(default_factory=list)
    prepared: PreparedLog | None = field(default=None, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def storage_bytes(self) -> int:
        """Bytes counted against the counter's storage quota."""
        if self.status == "created":
            return self.estimate
        return self.size if self.status == "processed" else 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": self.request_id,
            "counter_id": self.counter_id,
            "source": self.query.source,
            "date1": self.query.date1.isoformat(),
            "date2": self.query.date2.isoformat(),
            "fields": list(self.query.fields),
            "status": self.status,
        }
        if self.status in ("processed", "cleaned_by_user"):
            body["size"] = self.size
        if self.status == "processed":
            body["parts"] = [{"part_number": n, "size": size} for n, size in enumerate(self.part_sizes)]
        body["attribution"] = self.query.attribution
        return body


class LogRequestStore:
    """All log requests of one sandbox (``app[LOG_REQUESTS]``); status advances lazily with time."""

    def __init__(
        self,
        config: SandboxConfig,
        days: DayStore,
        faults: Faults,
        clock: Callable[[], float] = time.monotonic,
        counters: Counters | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.days = days
        self.faults = faults
        self.clock = clock
        self.counters = counters or Counters(config.counter_zones)
        self.now = now
        self.requests: dict[int, LogRequest] = {}
        self._ids = count(10_000_001)
        self.prepared = PreparedLogs()
        self._estimates: OrderedDict[tuple[int, date, str, tuple[str, ...]], int] = OrderedDict()

    def today(self, counter: int) -> date:
        """The counter's own date (in its time zone): a day can be asked for once it ended there."""
        return self.config.today or self.counters.today(counter, self.now())

    def parse(self, counter: int, query: Mapping[str, str]) -> LogQuery:
        return parse_query(query, self.today(counter))

    def used_bytes(self, counter: int) -> int:
        return sum(r.storage_bytes for r in self.requests.values() if r.counter_id == counter)

    async def estimate(self, counter: int, query: LogQuery) -> int:
        """Expected size: the rendered size of the first day times the number of days."""
        key = (counter, query.date1, query.source, query.fields)
        if key not in self._estimates:
            frame = await self.days.frame(counter, query.source, query.date1, query.date1)
            sizes = await asyncio.to_thread(measure_parts, frame, list(query.fields), max(len(frame), 1))
            self._estimates[key] = sum(sizes)
            while len(self._estimates) > 256:
                self._estimates.popitem(last=False)
        return self._estimates[key] * query.days

    async def evaluate(self, counter: int, query: LogQuery) -> dict[str, Any]:
        forced = self.faults.take_evaluation()
        if forced is not None:
            return dict(forced)
        needed = await self.estimate(counter, query)
        free = self.config.storage_limit_bytes - self.used_bytes(counter)
        per_day = needed // query.days
        max_days = free // per_day if per_day > 0 else (MAX_PERIOD_DAYS if free >= 0 else 0)
        return {"possible": needed <= free, "max_possible_day_quantity": max_days}

    async def create(self, counter: int, query: LogQuery) -> LogRequest:
        needed = await self.estimate(counter, query)
        free = self.config.storage_limit_bytes - self.used_bytes(counter)
        if needed > free:
            raise _invalid(
                f"Not enough free space in the logs storage: {needed} bytes needed, {free} free; "
                "clean processed log requests"
            )
        request = LogRequest(
            request_id=next(self._ids),
            counter_id=counter,
            query=query,
            created_at=self.clock(),
            estimate=needed,
            will_fail=self.faults.take_processing_failure(),
        )
        self.requests[request.request_id] = request
        log.info("log request %s: %s %s..%s", request.request_id, query.source, query.date1, query.date2)
        return request

    def get(self, counter: int, request_id: int) -> LogRequest:
        request = self.requests.get(request_id)
        if request is None or request.counter_id != counter:
            raise ApiError(404, "not_found", f"Log request {request_id} not found")
        return request

    def for_counter(self, counter: int) -> list[LogRequest]:
        return [r for r in self.requests.values() if r.counter_id == counter]

    async def refresh(self, request: LogRequest) -> None:
        """Move a ``created`` request on once ``processing_seconds`` have passed."""
        if request.status != "created" or self.clock() - request.created_at < self.config.processing_seconds:
            return
        if request.counter_id in self.faults.never_prepared:
            return
        async with request.lock:
            if request.status != "created":
                return
            if request.will_fail:
                request.status = "processing_failed"
                log.info("log request %s processing_failed (injected)", request.request_id)
                return
            query = request.query
            frame = await self.days.frame(request.counter_id, query.source, query.date1, query.date2)
            prepared = await self.prepared.get(frame, query.fields, self.config.rows_per_part)
            if request.status != "created":  # canceled meanwhile
                return
            request.prepared = prepared
            request.part_sizes = list(prepared.sizes)
            request.size = sum(prepared.sizes)
            request.status = "processed"
            log.info(
                "log request %s processed: %s B, %s parts",
                request.request_id,
                request.size,
                len(prepared.sizes),
            )

    async def cancel(self, request: LogRequest) -> None:
        await self.refresh(request)
        if request.status != "created":
            raise _invalid(f"Only log requests in status 'created' can be canceled, not '{request.status}'")
        request.status = "canceled"

    async def clean(self, request: LogRequest) -> None:
        await self.refresh(request)
        if request.status not in ("processed", "processing_failed"):
            raise _invalid(f"Only log requests in status 'processed' can be cleaned, not '{request.status}'")
        request.status = "cleaned_by_user"
        request.prepared = None
        request.part_sizes = []
