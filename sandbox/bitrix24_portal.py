"""The state behind the Bitrix24 REST emulator: each webhook code's deals and leads, the per-portal
leaky bucket that answers ``QUERY_LIMIT_EXCEEDED``, and the ``time`` block of every answer.

Sources: https://apidocs.bitrix24.com/limits.html (leaky bucket: +1 per request, drains Y a second,
refuses past X; X=50, Y=2 except Enterprise; counted per portal and caller IP; the ``operating`` sum of a
method's execution time over 10 minutes), crm.deal.get / crm.lead.get pages of bitrix24/b24restdocs
(fields and the example ``time`` block).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from sandbox.clock import MOSCOW

__all__ = ["BITRIX", "OPERATING_WINDOW_S", "BitrixPortals", "Entity", "LeakyBucket", "entity", "time_block"]

#: Bitrix24 sums each method's execution time over 10 minutes (``operating``)
OPERATING_WINDOW_S = 600

Entity = dict[str, Any]

#: the fields a stored deal or lead has unless the test gives them (Bitrix24 sends numbers as strings)
_DEAL_DEFAULTS: Entity = {
    "TITLE": "",
    "TYPE_ID": "SALE",
    "STAGE_ID": "NEW",
    "CATEGORY_ID": "0",
    "STAGE_SEMANTIC_ID": "P",
    "CURRENCY_ID": "RUB",
    "OPPORTUNITY": "0.00",
    "COMPANY_ID": "0",
    "CONTACT_ID": None,
    "ASSIGNED_BY_ID": "1",
    "OPENED": "Y",
    "CLOSED": "N",
}
_LEAD_DEFAULTS: Entity = {
    "TITLE": "",
    "STATUS_ID": "NEW",
    "STATUS_SEMANTIC_ID": "P",
    "CURRENCY_ID": "RUB",
    "OPPORTUNITY": "0.00",
    "CONTACT_ID": None,
    "ASSIGNED_BY_ID": "1",
    "OPENED": "Y",
}


def _iso(timestamp: float) -> str:
    """Bitrix24's datetime: ISO 8601 with the portal's offset (the sandbox's portals are in Moscow)."""
    return datetime.fromtimestamp(timestamp, MOSCOW).isoformat(timespec="seconds")


def _bitrix_value(key: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return value
    if key == "OPPORTUNITY" and isinstance(value, int | float):
        return f"{value:.2f}"
    if isinstance(value, int | float):
        return str(value)
    return value


def entity(kind: str, fields: Entity, now: float) -> Entity:
    """A deal or lead as crm.deal.get / crm.lead.get return it: the given fields over the defaults, ``ID``
    a positive integer (as a string), numbers as strings, DATE_CREATE/DATE_MODIFY now unless given."""
    raw_id = fields.get("ID")
    if isinstance(raw_id, bool) or not str(raw_id).isdigit() or int(str(raw_id)) <= 0:
        raise ValueError(f"every {kind} needs an ID that is a positive integer, got {raw_id!r}")
    defaults = _DEAL_DEFAULTS if kind == "deal" else _LEAD_DEFAULTS
    item: Entity = {"ID": str(int(str(raw_id)))}
    item.update({k: v for k, v in defaults.items()})
    item["TITLE"] = f"{kind.capitalize()} #{item['ID']}"
    item["DATE_CREATE"] = item["DATE_MODIFY"] = _iso(now)
    item.update({str(k): _bitrix_value(str(k), v) for k, v in fields.items() if k != "ID"})
    return item


class LeakyBucket:
    """Bitrix24's request-intensity limit for one portal and caller IP: each request adds 1, the level
    drains ``rate`` a second, and a request that would take it past ``capacity`` is refused (and not
    counted). ``rate`` of 0 or less switches it off."""

    def __init__(self, rate: float, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.capacity, self._clock = rate, capacity, clock
        self._level: dict[tuple[str, str], tuple[float, float]] = {}
        self.accepted: defaultdict[str, int] = defaultdict(int)
        self.refused: defaultdict[str, int] = defaultdict(int)

    def level(self, portal: str, ip: str) -> float:
        level, updated = self._level.get((portal, ip), (0.0, self._clock()))
        return max(0.0, level - (self._clock() - updated) * self.rate)

    def admit(self, portal: str, ip: str) -> bool:
        if self.rate <= 0:
            self.accepted[portal] += 1
            return True
        level = self.level(portal, ip)
        if level + 1 > self.capacity:
            self._level[(portal, ip)] = (level, self._clock())
            self.refused[portal] += 1
            return False
        self._level[(portal, ip)] = (level + 1, self._clock())
        self.accepted[portal] += 1
        return True

    def fill(self, portal: str, ip: str, level: float) -> None:
        """Tests: pretend other callers already used the bucket up to ``level``."""
        self._level[(portal, ip)] = (level, self._clock())

    def clear(self) -> None:
        self._level.clear()
        self.accepted.clear()
        self.refused.clear()

    def to_json(self) -> dict[str, Any]:
        portals = sorted(set(self.accepted) | set(self.refused))
        return {p: {"accepted": self.accepted[p], "refused": self.refused[p]} for p in portals}


@dataclass
class _Run:
    start: float
    processing: float


def time_block(start: float, finish: float, processing: float, operating: float, reset_at: float) -> Entity:
    """The ``time`` object every Bitrix24 REST answer carries (cloud, REST module 22.0.0+)."""
    return {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": _iso(start),
        "date_finish": _iso(finish),
        "operating_reset_at": int(reset_at),
        "operating": operating,
    }


class BitrixPortals:
    """The emulator's data (``app[BITRIX]``): accepted webhook codes, each code's deals and leads (a code
    stands for its portal), the leaky bucket, and each method's execution times for ``operating``."""

    def __init__(
        self, codes: Iterable[str], limit: LeakyBucket, now: Callable[[], float] = time.time
    ) -> None:
        self.now = now
        self.configured = frozenset(codes)
        self.codes: set[str] = set(self.configured)
        self.limit = limit
        self.deals: defaultdict[str, dict[str, Entity]] = defaultdict(dict)
        self.leads: defaultdict[str, dict[str, Entity]] = defaultdict(dict)
        self._runs: defaultdict[tuple[str, str], deque[_Run]] = defaultdict(deque)

    def put(self, kind: str, code: str, items: Iterable[Entity]) -> list[str]:
        """Store deals or leads (``kind``: deal | lead) under ``code``, replacing those with the same ID;
        the code becomes an accepted webhook. ValueError (nothing stored) if an item has no valid ID."""
        store = self.deals if kind == "deal" else self.leads
        now = self.now()
        stored = [entity(kind, fields, now) for fields in items]
        self.codes.add(code)
        for item in stored:
            store[code][item["ID"]] = item
        return [item["ID"] for item in stored]

    def put_deals(self, code: str, deals: Iterable[Entity]) -> list[str]:
        return self.put("deal", code, deals)

    def put_leads(self, code: str, leads: Iterable[Entity]) -> list[str]:
        return self.put("lead", code, leads)

    def get(self, kind: str, code: str, entity_id: str) -> Entity | None:
        return (self.deals if kind == "deal" else self.leads).get(code, {}).get(entity_id)

    def record_run(self, portal: str, method: str, start: float, processing: float) -> tuple[float, float]:
        """Count one execution of ``method``; the (operating seconds, operating_reset_at) to report."""
        runs = self._runs[(portal, method)]
        runs.append(_Run(start, processing))
        while runs and runs[0].start <= start - OPERATING_WINDOW_S:
            runs.popleft()
        return sum(r.processing for r in runs), runs[0].start + OPERATING_WINDOW_S

    def clear(self) -> None:
        """Forget data, codes added at run time, the bucket and the execution times."""
        self.codes = set(self.configured)
        self.deals.clear()
        self.leads.clear()
        self.limit.clear()
        self._runs.clear()

    def to_json(self) -> dict[str, Any]:
        codes = sorted(set(self.deals) | set(self.leads))
        return {
            "portals": {
                code: {
                    "deals": list(self.deals.get(code, {}).values()),
                    "leads": list(self.leads.get(code, {}).values()),
                }
                for code in codes
            },
            "limit": self.limit.to_json(),
        }


BITRIX = web.AppKey("bitrix", BitrixPortals)
