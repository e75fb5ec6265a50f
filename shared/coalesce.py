"""Coalescer: concurrent calls that arrive while a round trip is under way share the next one.

Under load a gateway answers many small requests at once; giving each its own Postgres statement and
its own commit costs a round trip and an fsync apiece. A Coalescer collects the calls that arrive while
the previous group is in flight and runs them as one group, so the cost is paid once per group and
nobody waits for a timer: with one caller, a group is that one call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`await coalescer(item)` -> `run(group)[i]` for the group the item landed in.

    `run` gets up to `max_items` items and returns one result per item, in order. If a group fails, each
    of its items is run once more on its own, so one bad item fails only its own caller; `run` must
    therefore be safe to repeat after a failure (one statement, or one transaction, per group). A failure
    for which `retry_alone(exc)` is false (say, the database is down) fails every caller of the group at
    once instead.
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_items: int = 64,
        concurrency: int = 1,
        retry_alone: Callable[[BaseException], bool] = lambda exc: True,
    ) -> None:
        self._run = run
        self._retry_alone = retry_alone
        self._max_items = max_items
        self._concurrency = concurrency
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._flushers) < self._concurrency:
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        # a caller that goes away cancels only its own future, never the group's round trip
        return await future

    async def close(self) -> None:
        """Wait for the groups under way (their callers are owed an answer)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[: self._max_items], self._pending[self._max_items :]
            try:
                await self._run_group(group)
            finally:  # cancelled (shutdown): nobody is left waiting forever
                for _, future in group:
                    _settle(future, exc=RuntimeError("shutting down"))

    async def _run_group(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in group])
        except Exception as exc:
            if len(group) == 1 or not self._retry_alone(exc):
                for _, future in group:
                    _settle(future, exc=exc)
                return
            logger.warning("a group of %s failed (%r); running each on its own", len(group), exc)
            for item, future in group:
                try:
                    (result,) = await self._run([item])
                except Exception as single_exc:
                    _settle(future, exc=single_exc)
                else:
                    _settle(future, result)
            return
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result)


def _settle(future: asyncio.Future[R], result: R | None = None, *, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
