"""A few threads for the scorer's numpy and Arrow work, which runs with the GIL released.

``in_order`` runs calls on the pool and yields their results in the order the calls came, with only
a few in flight: a day is read and scored a piece at a time on every core, in bounded memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

THREADS = max(1, min(4, os.cpu_count() or 1))


def pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="scorer-worker")


def in_order(
    executor: ThreadPoolExecutor, calls: Iterable[Callable[[], T]], ahead: int = THREADS + 1
) -> Iterator[T]:
    """Results of ``calls`` in their order; at most ``ahead`` submitted and not yet taken.

    ``calls`` is consumed on this thread (it may read files); if anything fails, the calls not
    started yet are cancelled and the error is raised here.
    """
    pending: deque[Future[T]] = deque()
    try:
        for call in calls:
            pending.append(executor.submit(call))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
