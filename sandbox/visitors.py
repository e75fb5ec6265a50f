"""Which visitors the sandbox "knows", for linking offline conversions to sessions.

A ClientId is known on a day if the simulator produced it for that counter on that day (or it was
registered by hand); UserId, Yclid and PurchaseId cannot be checked, so every one is known unless listed
as unknown.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from datetime import date, timedelta

from aiohttp import web

from sandbox.days import DayStore
from sandbox.simulator import Day

__all__ = ["LINK_WINDOW_DAYS", "VISITORS", "Visitors"]

#: a conversion links to a session at most this many days before it (and before processing)
LINK_WINDOW_DAYS = 21
_CLIENT_COLUMN = "ym:s:clientID"


def _client_ids(data: Day) -> frozenset[str]:
    if _CLIENT_COLUMN not in data.visits.columns:
        return frozenset()
    return frozenset(str(value) for value in data.visits[_CLIENT_COLUMN].tolist())


class Visitors:
    """Known visitors per counter (``app[VISITORS]``)."""

    def __init__(self, days: DayStore, unknown_ids: Iterable[str] = (), cache_size: int = 64) -> None:
        self.days = days
        self.configured_unknown = frozenset(unknown_ids)
        self.unknown_ids: set[str] = set(self.configured_unknown)
        self.registered: dict[int, set[str]] = {}
        self.cache_size = cache_size
        self._clients: OrderedDict[tuple[int, date], frozenset[str]] = OrderedDict()

    def register(self, counter: int, client_ids: Iterable[str]) -> None:
        """These ClientIds link on ``counter`` whatever the conversion's date."""
        self.registered.setdefault(counter, set()).update(str(c).strip() for c in client_ids)

    def mark_unknown(self, ids: Iterable[str]) -> None:
        """These UserId/Yclid/PurchaseId values never link."""
        self.unknown_ids.update(str(i).strip() for i in ids)

    def clear(self) -> None:
        self.registered.clear()
        self.unknown_ids = set(self.configured_unknown)

    def unverifiable_known(self, visitor: str) -> bool:
        """UserId/Yclid/PurchaseId rule: any non-empty value not listed as unknown."""
        return bool(visitor) and visitor not in self.unknown_ids

    async def clients_on(self, counter: int, day: date) -> frozenset[str]:
        """ClientIds the simulator produced for ``counter`` on ``day`` (simulating it if needed)."""
        key = (counter, day)
        cached = self._clients.get(key)
        if cached is not None:
            self._clients.move_to_end(key)
            return cached
        data = await self.days.day(counter, day)
        clients = await asyncio.to_thread(_client_ids, data)
        self._clients[key] = clients
        while len(self._clients) > self.cache_size:
            self._clients.popitem(last=False)
        return clients

    def candidate_days(self, counter: int, day: date) -> list[date]:
        """Days searched for a conversion on ``day``: that day and the one before, plus every day
        already generated for the counter within the 21 days before it."""
        earliest = day - timedelta(days=LINK_WINDOW_DAYS)
        seen = {d for d in self.days.days_seen(counter) if earliest <= d <= day}
        return sorted(seen | {day, day - timedelta(days=1)})

    async def clients_before(self, counter: int, day: date) -> set[str]:
        """ClientIds that link for a conversion on ``day`` (the counter's local date), registered ones
        included."""
        known = set(self.registered.get(counter, ()))
        for candidate in self.candidate_days(counter, day):
            known |= await self.clients_on(counter, candidate)
        return known


VISITORS = web.AppKey("visitors", Visitors)
