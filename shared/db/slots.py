"""Per-counter slots shared by every replica: at most N calls of one kind in flight for one counter.

Slot i of (kind, counter) is the session-level advisory lock (kind's base + i, counter) taken on this
process's one slots connection, outside the pool: Postgres frees every slot a process holds the moment
its connection closes (the process died, or Postgres restarted), so a crash never leaks one and nothing
needs a lease or a sweeper. The two-int4 key space does not overlap the bigint one of shared.db.locks.

A process first takes one of N in-process places per (kind, counter) (so at most N of its callers ask
Postgres), then tries the slots it does not hold itself, every POLL_S while all are busy elsewhere.
Waiting ends after `wait_s` with SlotsBusy: the caller gives its work back (a durable retry) instead of
holding a consumer slot that other counters' work needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping

import asyncpg

logger = logging.getLogger(__name__)

LOGS_API = "logs_api"
UPLOADS = "uploads"
# the first int4 key of slot 0 of each kind; slot i is base + i (limits stay far below 2**16)
KIND_BASE = {LOGS_API: 0x6D730000, UPLOADS: 0x6D740000}
TRY_LOCK = "SELECT pg_try_advisory_lock($1::int4, $2::int4)"
UNLOCK = "SELECT pg_advisory_unlock($1::int4, $2::int4)"
# how often a caller whose counter's slots are all held elsewhere tries again (with jitter)
POLL_S = 0.05


class SlotsBusy(Exception):
    """Every slot of the counter stayed held for the whole wait."""

    def __init__(self, kind: str, counter: int, limit: int, waited_s: float) -> None:
        super().__init__(f"all {limit} {kind} slots of counter {counter} stayed busy for {waited_s:g} s")
        self.kind, self.counter, self.limit, self.waited_s = kind, counter, limit, waited_s


def _int4(counter: int) -> int:
    """A counter id as the second int4 key (ids past 2**31 wrap; two counters 2**32 apart would share)."""
    return (counter + 2**31) % 2**32 - 2**31


class CounterSlots:
    """`limits[kind]` slots per counter across every process on the database `dsn`; `hold(kind, counter)`
    is one of them for the block. A limit of 0 or less: no limit for that kind."""

    def __init__(self, dsn: str, limits: Mapping[str, int], wait_s: float) -> None:
        unknown = set(limits) - set(KIND_BASE)
        if unknown:
            raise ValueError(f"unknown slot kinds {sorted(unknown)}")
        self.dsn, self.limits, self.wait_s = dsn, dict(limits), wait_s
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()  # one query at a time on the one connection
        self._places: dict[tuple[str, int], asyncio.Semaphore] = {}
        # the slots this process holds, per (kind, counter), on the connection of generation _generation
        self._held: defaultdict[tuple[str, int], set[int]] = defaultdict(set)
        self._generation = 0
        self._returning: set[asyncio.Future[None]] = set()  # slots given back after their taker was cancelled

    @contextlib.asynccontextmanager
    async def hold(self, kind: str, counter: int, wait_s: float | None = None) -> AsyncIterator[None]:
        """One of the counter's `kind` slots for the block; SlotsBusy after `wait_s` (default: the
        instance's) of all of them held. Postgres errors pass through (the caller treats an outage)."""
        limit = self.limits.get(kind, 0)
        if limit <= 0:
            yield
            return
        wait = self.wait_s if wait_s is None else wait_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        place = self._places.setdefault((kind, counter), asyncio.Semaphore(limit))
        try:
            await asyncio.wait_for(place.acquire(), timeout=max(wait, 0.0))
        except TimeoutError:
            raise SlotsBusy(kind, counter, limit, wait) from None
        try:
            while (taken := await self._take_shielded(kind, counter, limit)) is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise SlotsBusy(kind, counter, limit, wait)
                await asyncio.sleep(min(remaining, POLL_S * random.uniform(0.5, 1.5)))
            try:
                yield
            finally:
                await asyncio.shield(self._give_back(kind, counter, *taken))
        finally:
            place.release()

    def held(self, kind: str, counter: int) -> int:
        """How many of the counter's `kind` slots this process holds now (tests, metrics)."""
        return len(self._held.get((kind, counter), ()))

    async def close(self) -> None:
        async with self._conn_lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
            self._forget()

    async def _take_shielded(self, kind: str, counter: int, limit: int) -> tuple[int, int] | None:
        """`_take`, finished even if the caller is cancelled meanwhile: a slot Postgres granted to a caller
        that is gone is given back, never left held for the life of the connection."""
        take = asyncio.ensure_future(self._take(kind, counter, limit))
        try:
            return await asyncio.shield(take)
        except asyncio.CancelledError:
            take.add_done_callback(lambda done: self._give_back_later(kind, counter, done))
            raise

    def _give_back_later(self, kind: str, counter: int, take: asyncio.Future[tuple[int, int] | None]) -> None:
        if not take.cancelled() and take.exception() is None and (taken := take.result()) is not None:
            give_back = asyncio.ensure_future(self._give_back(kind, counter, *taken))
            self._returning.add(give_back)
            give_back.add_done_callback(self._returning.discard)

    async def _take(self, kind: str, counter: int, limit: int) -> tuple[int, int] | None:
        """A free slot taken now (its index, and the connection generation that holds it), or None."""
        async with self._conn_lock:
            conn = await self._connection()
            generation, held = self._generation, self._held[(kind, counter)]
            free = [i for i in range(limit) if i not in held]
            random.shuffle(free)  # replicas do not all knock on slot 0 first
            for index in free:
                try:
                    locked = await conn.fetchval(TRY_LOCK, KIND_BASE[kind] + index, _int4(counter))
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                    self._forget()  # its slots went with it
                    raise
                if locked:
                    held.add(index)
                    return index, generation
        return None

    async def _give_back(self, kind: str, counter: int, index: int, generation: int) -> None:
        async with self._conn_lock:
            if generation != self._generation or self._conn is None:
                return  # that connection is gone, and Postgres freed the slot with it
            self._held[(kind, counter)].discard(index)
            try:
                await self._conn.fetchval(UNLOCK, KIND_BASE[kind] + index, _int4(counter))
            except Exception as exc:
                logger.warning("slot %s of %s %s kept (%s); reconnecting", index, kind, counter, exc)
                with contextlib.suppress(Exception):
                    self._conn.terminate()
                self._forget()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._forget()
            self._conn = await asyncpg.connect(self.dsn)
        return self._conn

    def _forget(self) -> None:
        self._conn = None
        self._held.clear()
        self._generation += 1
