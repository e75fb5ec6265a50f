"""What the uploader's handler, poller and sweeper need, built once in main()."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from shared import metrika
from shared.counter_zones import CounterZones
from shared.crypto import TokenCipher
from shared.db.slots import UPLOADS, CounterSlots, SlotsBusy
from shared.metrika import COUNTER_BUSY, MetrikaError
from shared.settings import Settings
from uploader.metrika import ConversionsApi

# a counter's goals are asked for at most this often (every batch of a busy counter needs them)
GOALS_TTL_S = 30.0


@dataclass
class Deps:
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    cipher: TokenCipher
    settings: Settings
    # uploads, goal lookups and status queries in flight per counter, in every uploader replica and its
    # poller (Yandex allows 3 parallel requests per user); None: counted in this process only
    slots: CounterSlots | None = None
    _per_counter: dict[int, asyncio.Semaphore] = field(default_factory=dict)
    _goals: dict[tuple[int, bytes], tuple[float, set[str]]] = field(default_factory=dict)
    _goal_locks: defaultdict[tuple[int, bytes], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    _zones: CounterZones | None = None

    @property
    def zones(self) -> CounterZones:
        """Counters' time zones (made on first use, with this pool and session)."""
        if self._zones is None:
            self._zones = CounterZones(self.pool, self.session, self.settings)
        return self._zones

    def client(self, token_enc: bytes, counter: int) -> ConversionsApi:
        return ConversionsApi(
            self.session,
            self.settings.metrika_api_url,
            self.cipher.decrypt(token_enc),
            counter,
            attempts=self.settings.http_retry_attempts,
            backoff_max_s=self.settings.http_retry_max_s,
            timeout_s=self.settings.metrika_timeout_s,
        )

    @contextlib.asynccontextmanager
    async def counter_slot(self, counter: int) -> AsyncIterator[None]:
        """One of the counter's COUNTER_CONCURRENCY slots for the block; a retryable MetrikaError of
        type COUNTER_BUSY once they stayed busy for COUNTER_SLOT_WAIT_S (the caller retries durably)."""
        if self.slots is None:
            if counter not in self._per_counter:
                self._per_counter[counter] = asyncio.Semaphore(self.settings.counter_concurrency)
            async with self._per_counter[counter]:
                yield
            return
        try:
            async with self.slots.hold(UPLOADS, counter):
                yield
        except SlotsBusy as exc:
            raise MetrikaError(f"{exc} (COUNTER_CONCURRENCY)", error_type=COUNTER_BUSY) from None

    async def goal_targets(self, client: ConversionsApi, token_enc: bytes, wanted: set[str]) -> set[str]:
        """The counter's goal targets, asked once per GOALS_TTL_S and counter (and token), and again at
        once when a `wanted` target is missing (a goal created a moment ago is found)."""
        key = (client.counter, bytes(token_enc))
        async with self._goal_locks[key]:
            cached = self._goals.get(key)
            if cached is not None and time.monotonic() - cached[0] < GOALS_TTL_S and wanted <= cached[1]:
                return cached[1]
            async with self.counter_slot(client.counter):
                targets = await client.goal_targets()
            self._goals[key] = (time.monotonic(), targets)
            return targets

    def retry_delay_s(self, attempts: int, error: BaseException) -> float:
        """The durable backoff before attempt `attempts + 1`, honouring Metrika's Retry-After."""
        retry_after = getattr(error, "retry_after", None)  # Metrika's or Bitrix24's Retry-After
        return metrika.backoff_s(
            attempts + 1,
            base_s=self.settings.retry_base_s,
            max_s=self.settings.retry_max_s,
            retry_after=retry_after,
        )
