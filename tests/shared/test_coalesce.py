"""Coalescer: concurrent calls share a group; each caller still gets its own answer or error."""

from __future__ import annotations

import asyncio

import pytest

from shared.coalesce import Coalescer


class Doubler:
    """A group runner that records its groups and fails any group holding a negative number."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []

    async def __call__(self, items):
        self.groups.append(list(items))
        await asyncio.sleep(0.01)  # a round trip: calls arriving meanwhile form the next group
        if any(i < 0 for i in items):
            raise ValueError(f"negative in {items}")
        return [i * 2 for i in items]


async def test_concurrent_calls_share_one_group_and_get_their_own_results():
    run = Doubler()
    coalesce = Coalescer(run, max_items=64)
    assert await asyncio.gather(*(coalesce(i) for i in range(10))) == [i * 2 for i in range(10)]
    assert run.groups == [list(range(10))]
    assert await coalesce(7) == 14  # alone, a call is a group of one: nobody waits for a timer
    assert run.groups[-1] == [7]


async def test_calls_arriving_during_a_round_trip_form_the_next_group():
    run = Doubler()
    coalesce = Coalescer(run, max_items=4)
    first = asyncio.gather(*(coalesce(i) for i in range(6)))
    await asyncio.sleep(0.005)  # the first group is in flight
    later = asyncio.gather(*(coalesce(i) for i in range(100, 103)))
    assert await first == [i * 2 for i in range(6)]
    assert await later == [200, 202, 204]
    assert run.groups == [[0, 1, 2, 3], [4, 5, 100, 101], [102]]


async def test_a_bad_item_fails_only_its_own_caller():
    run = Doubler()
    coalesce = Coalescer(run)
    results = await asyncio.gather(coalesce(1), coalesce(-1), coalesce(3), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)
    assert run.groups == [[1, -1, 3], [1], [-1], [3]]  # the group failed, so each ran on its own


async def test_a_failure_of_the_whole_group_is_not_retried_item_by_item():
    run = Doubler()
    # say, the database is away: every caller shares the failure at once, nobody waits for it again
    coalesce = Coalescer(run, retry_alone=lambda exc: not isinstance(exc, ValueError))
    results = await asyncio.gather(coalesce(1), coalesce(-1), coalesce(3), return_exceptions=True)
    assert all(isinstance(result, ValueError) for result in results)
    assert run.groups == [[1, -1, 3]]


async def test_a_caller_that_goes_away_does_not_cancel_the_group():
    run = Doubler()
    coalesce = Coalescer(run)
    gone = asyncio.create_task(coalesce(1))
    stays = asyncio.create_task(coalesce(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == 4
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.groups == [[1, 2]]  # the departed caller's item still ran (a stored batch stays stored)
    await coalesce.close()
