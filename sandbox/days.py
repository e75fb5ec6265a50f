"""Simulated Metrika data per (counter, day): generated once, kept in a small LRU cache."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import date, timedelta

import pandas as pd

from sandbox.simulator import Day, simulate_day

__all__ = ["DayStore"]

log = logging.getLogger(__name__)


class DayStore:
    """Async access to ``simulate_day`` results; ``put`` pins hand-made data (tests)."""

    def __init__(self, visits_per_day: int | None, seed: int, cache_size: int = 8) -> None:
        self.visits_per_day = visits_per_day
        self.seed = seed
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, date], asyncio.Task[Day]] = OrderedDict()
        self._pinned: dict[tuple[int, date], Day] = {}
        self._seen: dict[int, set[date]] = {}

    def put(self, counter: int, day: date, data: Day) -> None:
        """Serve ``data`` for (counter, day) instead of simulating it."""
        self._pinned[(counter, day)] = data
        self._seen.setdefault(counter, set()).add(day)

    def days_seen(self, counter: int) -> set[date]:
        """Days of ``counter`` ever served or pinned (whether or not still cached)."""
        return set(self._seen.get(counter, ()))

    async def day(self, counter: int, day: date) -> Day:
        key = (counter, day)
        self._seen.setdefault(counter, set()).add(day)
        if key in self._pinned:
            return self._pinned[key]
        task = self._cache.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            log.debug("simulating counter %s day %s", counter, day)
            task = asyncio.ensure_future(
                asyncio.to_thread(simulate_day, counter, day, n_visits=self.visits_per_day, seed=self.seed)
            )
            self._cache[key] = task
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return await asyncio.shield(task)

    async def frame(self, counter: int, source: str, date1: date, date2: date) -> pd.DataFrame:
        """All rows of ``source`` (visits or hits) for date1..date2 inclusive, in day order."""
        frames: list[pd.DataFrame] = []
        day = date1
        while day <= date2:
            data = await self.day(counter, day)
            frames.append(data.visits if source == "visits" else data.hits)
            day += timedelta(days=1)
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)
