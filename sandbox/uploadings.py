"""Offline-conversion uploadings: their lifecycle, the linkage of rows, and the log of received lines.

Status advances lazily with time: ``UPLOADED`` -> ``EXPORTED`` -> ``MATCHED`` (each a third of
``conversion_processing_seconds``) -> ``PROCESSED``, or ``LINKAGE_FAILURE`` when no row links.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from itertools import count
from typing import Any

from aiohttp import web

from sandbox.clock import sandbox_now
from sandbox.config import SandboxConfig
from sandbox.conversion_csv import ConversionRow, ParsedConversions
from sandbox.counters import Counters
from sandbox.errors import ApiError
from sandbox.faults import Faults
from sandbox.goals import GoalStore
from sandbox.visitors import LINK_WINDOW_DAYS, Visitors

__all__ = [
    "CONVERSIONS",
    "FINAL_STATUSES",
    "NO_OBJECT_MESSAGE",
    "ConversionLog",
    "ReceivedLine",
    "UPLOADINGS",
    "Uploading",
    "UploadingStore",
]

log = logging.getLogger(__name__)

NO_OBJECT_MESSAGE = "No object with specified ID."
FINAL_STATUSES = frozenset({"PROCESSED", "LINKAGE_FAILURE"})
_STAGES = ("UPLOADED", "EXPORTED", "MATCHED")
FIRST_UPLOADING_ID = 719_450_000


@dataclass(frozen=True)
class ReceivedLine:
    """One CSV data line of an accepted upload, as received (``row``: header -> raw value)."""

    counter: int
    upload_id: int
    client_id_type: str
    row: dict[str, str]
    line: int
    valid: bool
    received: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ConversionLog:
    """Every line of every accepted upload (``app[CONVERSIONS]``): evidence for exactly-once tests."""

    def __init__(self) -> None:
        self.lines: list[ReceivedLine] = []

    def record(self, uploading: Uploading, rows: list[ConversionRow], received: float) -> None:
        self.lines.extend(
            ReceivedLine(
                uploading.counter_id,
                uploading.id,
                uploading.client_id_type,
                row.values,
                row.line,
                row.valid,
                received,
            )
            for row in rows
        )

    def lines_for(self, counter: int) -> list[ReceivedLine]:
        return [line for line in self.lines if line.counter == counter]

    def rows_for(self, counter: int) -> list[dict[str, str]]:
        """Just the rows (header -> value) received for ``counter``, in arrival order."""
        return [line.row for line in self.lines_for(counter)]

    def clear(self) -> None:
        self.lines.clear()

    def to_json(self, counter: int | None = None) -> list[dict[str, Any]]:
        lines = self.lines if counter is None else self.lines_for(counter)
        return [line.to_json() for line in lines]


@dataclass
class Uploading:
    id: int
    counter_id: int
    client_id_type: str
    comment: str | None
    create_time: float
    started: float
    source_quantity: int
    line_quantity: int
    rows: list[ConversionRow] = field(repr=False)
    force_failure: bool = False
    status: str = "UPLOADED"
    goal_not_found_quantity: int = 0
    user_not_found_quantity: int = 0
    linked_quantity: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def to_json(self) -> dict[str, Any]:
        created = datetime.fromtimestamp(self.create_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "id": self.id,
            "create_time": created,
            "source_quantity": self.source_quantity,
            "line_quantity": self.line_quantity,
            "comment": self.comment,
            "client_id_type": self.client_id_type,
            "status": self.status,
            "type": "BASIC",
            "goal_not_found_quantity": self.goal_not_found_quantity,
            "user_not_found_quantity": self.user_not_found_quantity,
            "linked_quantity": self.linked_quantity,
        }


class UploadingStore:
    """All uploadings of one sandbox (``app[UPLOADINGS]``)."""

    def __init__(
        self,
        config: SandboxConfig,
        goals: GoalStore,
        visitors: Visitors,
        faults: Faults,
        conversions: ConversionLog,
        clock: Callable[[], float] = time.monotonic,
        counters: Counters | None = None,
    ) -> None:
        self.config = config
        self.counters = counters or Counters(config.counter_zones)
        self.goals = goals
        self.visitors = visitors
        self.faults = faults
        self.conversions = conversions
        self.clock = clock
        self.uploadings: dict[int, Uploading] = {}
        self._ids = count(FIRST_UPLOADING_ID)

    def create(
        self, counter: int, client_id_type: str, comment: str | None, parsed: ParsedConversions
    ) -> Uploading:
        now = sandbox_now(self.config)
        uploading = Uploading(
            id=next(self._ids),
            counter_id=counter,
            client_id_type=client_id_type,
            comment=comment,
            create_time=now,
            started=self.clock(),
            source_quantity=parsed.source_quantity,
            line_quantity=parsed.line_quantity,
            rows=parsed.rows,
            force_failure=self.faults.take_linkage_failure(),
        )
        self.uploadings[uploading.id] = uploading
        self.conversions.record(uploading, parsed.rows, now)
        log.info(
            "counter %s: uploading %s (%s, %s lines)",
            counter,
            uploading.id,
            client_id_type,
            uploading.line_quantity,
        )
        return uploading

    def get(self, counter: int, uploading_id: int) -> Uploading:
        uploading = self.uploadings.get(uploading_id)
        if uploading is None or uploading.counter_id != counter:
            raise ApiError(400, "invalid_parameter", NO_OBJECT_MESSAGE)
        return uploading

    def for_counter(self, counter: int) -> list[Uploading]:
        return [u for u in self.uploadings.values() if u.counter_id == counter]

    def _stage(self, uploading: Uploading) -> str | None:
        """The time-driven status, or None once processing time is over."""
        total = self.config.conversion_processing_seconds
        elapsed = self.clock() - uploading.started
        if elapsed >= total:
            return None
        return _STAGES[min(int(3 * elapsed / total), len(_STAGES) - 1)]

    async def refresh(self, uploading: Uploading) -> None:
        if uploading.status in FINAL_STATUSES:
            return
        stage = self._stage(uploading)
        if stage is not None:
            uploading.status = stage
            return
        async with uploading.lock:
            if uploading.status in FINAL_STATUSES:
                return
            await self._link(uploading)

    async def _link(self, uploading: Uploading) -> None:
        """Count the rows into goal-not-found / user-not-found / linked and set the final status."""
        targets = self.goals.targets(uploading.counter_id)
        processed_at = uploading.create_time + self.config.conversion_processing_seconds
        horizon = processed_at - LINK_WINDOW_DAYS * 86_400
        by_day: dict[date, set[str]] = {}
        goal_missing = user_missing = linked = 0
        for row in uploading.rows:
            if not row.valid:
                continue
            if row.target not in targets:
                goal_missing += 1
            elif (
                not uploading.force_failure
                and row.timestamp >= horizon
                and await self._known(uploading, row, by_day)
            ):
                linked += 1
            else:
                user_missing += 1
        uploading.goal_not_found_quantity = goal_missing
        uploading.user_not_found_quantity = user_missing
        uploading.linked_quantity = linked
        uploading.status = "PROCESSED" if linked else "LINKAGE_FAILURE"
        uploading.rows = []  # the evidence stays in the conversion log
        log.info(
            "uploading %s %s: linked %s, goal not found %s, user not found %s",
            uploading.id,
            uploading.status,
            linked,
            goal_missing,
            user_missing,
        )

    async def _known(self, uploading: Uploading, row: ConversionRow, by_day: dict[date, set[str]]) -> bool:
        if uploading.client_id_type != "CLIENT_ID":  # UserId, Yclid, PurchaseId (docs/sandbox.md)
            return self.visitors.unverifiable_known(row.visitor)
        day = self.counters.local_date(uploading.counter_id, row.timestamp)  # the counter's local day
        if day not in by_day:
            by_day[day] = await self.visitors.clients_before(uploading.counter_id, day)
        return row.visitor in by_day[day]


CONVERSIONS = web.AppKey("conversions", ConversionLog)
UPLOADINGS = web.AppKey("uploadings", UploadingStore)
