"""Each counter's time zone, read from Metrika's Management API and kept: its days, its visit times and a
conversion `date_time` without a zone are in it.

`zone(counter, token)` looks in this process's memory, then in Postgres (table counter_zones, shared by
every replica and service), and asks the Management API (`GET /management/v1/counter/{id}`, field
`time_zone_name`) only when neither holds an answer younger than COUNTER_ZONE_TTL_S. When the API fails
(or names a zone this machine does not know) the last answer kept is used, else COUNTER_TIMEZONE; the
failure is logged once per counter, and the counter is not asked again with that token for
COUNTER_ZONE_RETRY_S (another token may have access).
`cached(counter)` never calls the API: the hot paths (webhook submissions) use it, and webhook creation
and update fetch the zone ahead with the webhook's token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import asyncpg

from shared import metrics
from shared.db import counter_zones
from shared.metrika import MetrikaApi, MetrikaError
from shared.settings import Settings

logger = logging.getLogger(__name__)

# counters remembered in memory at most (each entry is a few hundred bytes)
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class _Entry:
    zone: ZoneInfo
    until: float  # monotonic time after which Postgres (or the API) is asked again
    settled: bool  # Metrika's answer younger than the TTL (else a stale answer, or the fallback)


class CounterZones:
    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._session = session
        self._settings = settings
        self._clock = clock
        self._fallback = settings.counter_zone()
        self._ttl_s = settings.counter_zone_ttl_s
        self._retry_s = settings.counter_zone_retry_s
        self._memory: dict[int, _Entry] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # (counter, token) -> monotonic time before which the API is not asked again with that token (a
        # token without access fails; another one may not)
        self._failing: dict[tuple[int, str], float] = {}
        self._warned: set[int] = set()

    @property
    def fallback(self) -> ZoneInfo:
        return self._fallback

    async def zone(self, counter: int, token: str) -> ZoneInfo:
        """The counter's time zone, asked of the Management API with `token` when none younger than the TTL
        is kept; the zone kept, else the fallback, when the API fails."""
        if (zone := self._known_now(counter, token)) is not None:
            return zone
        async with self._lock(counter):  # one look-up per counter at a time; the others share its answer
            if (zone := self._known_now(counter, token)) is not None:
                return zone
            stored = await counter_zones.get(self._pool, counter)
            kept = _known(stored.timezone) if stored is not None else None
            if stored is not None and kept is not None and (left := self._left_s(stored.fetched_at)) > 0:
                return self._remember(counter, kept, left, settled=True)
            if self._failing.get((counter, token), 0.0) > self._clock():
                return self._remember(counter, kept or self._fallback, self._retry_s, settled=False)
            return await self._fetch(counter, token, kept)

    def _known_now(self, counter: int, token: str) -> ZoneInfo | None:
        """The zone remembered if it is Metrika's answer within the TTL, or if this token just failed."""
        entry = self._memory.get(counter)
        now = self._clock()
        if entry is None or entry.until <= now:
            return None
        return entry.zone if entry.settled or self._failing.get((counter, token), 0.0) > now else None

    async def today(self, counter: int, token: str, now: dt.datetime | None = None) -> dt.date:
        """The counter's date (in its zone) at `now` (aware; default: now): the Logs API serves the days
        before it."""
        zone = await self.zone(counter, token)
        return now.astimezone(zone).date() if now is not None else dt.datetime.now(zone).date()

    async def cached(self, counter: int) -> ZoneInfo:
        """The counter's zone without asking the API: from memory, else Postgres (however old), else the
        fallback (asked for again after COUNTER_ZONE_RETRY_S)."""
        entry = self._memory.get(counter)
        if entry is not None and entry.until > self._clock():
            return entry.zone
        async with self._lock(counter):
            entry = self._memory.get(counter)
            if entry is not None and entry.until > self._clock():
                return entry.zone
            stored = await counter_zones.get(self._pool, counter)
            kept = _known(stored.timezone) if stored is not None else None
            if stored is not None and kept is not None:
                left = self._left_s(stored.fetched_at)
                if left > 0:
                    return self._remember(counter, kept, left, settled=True)
                return self._remember(counter, kept, self._retry_s, settled=False)
            return self._remember(counter, self._fallback, self._retry_s, settled=False)

    def forget(self, counter: int) -> None:
        """Ask again next time (a test, or a counter whose zone is known to have changed)."""
        self._memory.pop(counter, None)
        self._failing = {key: until for key, until in self._failing.items() if key[0] != counter}

    async def _fetch(self, counter: int, token: str, kept: ZoneInfo | None) -> ZoneInfo:
        api = MetrikaApi(
            self._session,
            self._settings.metrika_api_url,
            token,
            counter,
            attempts=1,
            timeout_s=self._settings.counter_zone_timeout_s,
        )
        try:
            name = _zone_name(await api.send("GET", ""))
        except MetrikaError as exc:  # its text never holds the token
            return self._failed(counter, token, kept, str(exc))
        zone = _known(name)
        if zone is None:
            return self._failed(counter, token, kept, f"Metrika named an unknown time zone {name!r}")
        await counter_zones.put(self._pool, counter, name)
        self._warned.discard(counter)
        return self._remember(counter, zone, self._ttl_s, settled=True)

    def _failed(self, counter: int, token: str, kept: ZoneInfo | None, reason: str) -> ZoneInfo:
        zone = kept or self._fallback
        metrics.COUNTER_ZONE_FAILURES.labels("fallback").inc()
        if counter not in self._warned:
            self._warned.add(counter)
            used = f"the zone read before, {zone.key}" if kept else f"COUNTER_TIMEZONE {zone.key}"
            logger.warning("counter %s: time zone not read (%s); using %s", counter, reason, used)
        now = self._clock()
        if len(self._failing) >= MAX_ENTRIES:
            self._failing = {key: until for key, until in self._failing.items() if until > now}
        self._failing[(counter, token)] = now + self._retry_s
        return self._remember(counter, zone, self._retry_s, settled=False)

    def _remember(self, counter: int, zone: ZoneInfo, for_s: float, *, settled: bool) -> ZoneInfo:
        now = self._clock()
        if len(self._memory) >= MAX_ENTRIES and counter not in self._memory:
            self._memory = {k: v for k, v in self._memory.items() if v.until > now}
            if len(self._memory) >= MAX_ENTRIES:
                self._memory.clear()
        self._memory[counter] = _Entry(zone, now + for_s, settled)
        return zone

    def _left_s(self, fetched_at: dt.datetime) -> float:
        return self._ttl_s - (dt.datetime.now(dt.UTC) - fetched_at).total_seconds()

    def _lock(self, counter: int) -> asyncio.Lock:
        lock = self._locks.get(counter)
        if lock is None:
            if len(self._locks) >= MAX_ENTRIES:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[counter] = asyncio.Lock()
        return lock


def _zone_name(body: Any) -> str:
    """`counter.time_zone_name` of the Management API's answer (`counter.timezone` accepted too)."""
    counter = body.get("counter") if isinstance(body, dict) else None
    name = (counter.get("time_zone_name") or counter.get("timezone")) if isinstance(counter, dict) else None
    if not isinstance(name, str) or not name:
        raise MetrikaError("the answer names no time zone (counter.time_zone_name)", status=502)
    return name


def _known(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
