"""CounterZones: a counter's time zone from the Management API, kept in memory and in Postgres, with the
fallback when the API fails; on real Postgres and the sandbox."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from sandbox.app import COUNTERS, FAULTS, REQUEST_LOG
from shared.counter_zones import CounterZones
from shared.db import counter_zones
from shared.settings import Settings
from tests.conftest import override

TOKEN = "sandbox-token"
MOSCOW_COUNTER = 4242
NOVOSIBIRSK_COUNTER = 54_000_001
MOSCOW, NOVOSIBIRSK = ZoneInfo("Europe/Moscow"), ZoneInfo("Asia/Novosibirsk")


def asked(sandbox: TestServer, counter: int) -> int:
    """Calls of the counter's Management API object the sandbox received."""
    return len(sandbox.app[REQUEST_LOG].find("GET", f"/management/v1/counter/{counter}"))


@pytest.fixture
async def zones(
    pool: asyncpg.Pool, http: aiohttp.ClientSession, settings: Settings
) -> AsyncIterator[CounterZones]:
    yield CounterZones(pool, http, settings)


async def test_the_zone_is_asked_once_then_kept(zones, sandbox, pool, http, settings) -> None:
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    assert await zones.zone(MOSCOW_COUNTER, TOKEN) == MOSCOW
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1
    assert asked(sandbox, MOSCOW_COUNTER) == 1
    stored = await counter_zones.get(pool, NOVOSIBIRSK_COUNTER)
    assert stored is not None and stored.timezone == "Asia/Novosibirsk"

    # another process (or replica) finds it in Postgres: no call
    other = CounterZones(pool, http, settings)
    assert await other.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    assert await other.cached(NOVOSIBIRSK_COUNTER) == NOVOSIBIRSK
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1


async def test_cached_never_calls_the_api(zones, sandbox) -> None:
    assert await zones.cached(NOVOSIBIRSK_COUNTER) == MOSCOW  # nothing kept yet: the fallback
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 0


async def test_an_old_answer_is_asked_again(sandbox, pool, http, settings) -> None:
    zones = CounterZones(pool, http, override(settings, counter_zone_ttl_s=0))
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    sandbox.app[COUNTERS].set(NOVOSIBIRSK_COUNTER, "Asia/Omsk")
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == ZoneInfo("Asia/Omsk")
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 2


async def test_a_failing_api_falls_back_and_is_logged_once(zones, sandbox, caplog) -> None:
    sandbox.app[FAULTS].add(rf"/counter/{NOVOSIBIRSK_COUNTER}$", 503, times=None)
    failures_before = _zone_failures()
    with caplog.at_level(logging.WARNING, logger="shared.counter_zones"):
        assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == MOSCOW
        assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == MOSCOW
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1  # not asked again before COUNTER_ZONE_RETRY_S
    assert _zone_failures() == failures_before + 1  # counted per failed look-up (metrics)
    warnings = [r.getMessage() for r in caplog.records if r.name == "shared.counter_zones"]
    assert len(warnings) == 1
    assert "COUNTER_TIMEZONE Europe/Moscow" in warnings[0] and "503" in warnings[0]
    assert TOKEN not in warnings[0]


async def test_a_failing_api_keeps_the_zone_read_before(sandbox, pool, http, settings) -> None:
    settings = override(settings, counter_zone_ttl_s=0, counter_zone_retry_s=0)
    zones = CounterZones(pool, http, settings)
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    sandbox.app[COUNTERS].set(NOVOSIBIRSK_COUNTER, access="denied")  # a token that lost its access
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    assert await zones.zone(NOVOSIBIRSK_COUNTER, "not-a-token") == NOVOSIBIRSK
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 3


async def test_a_bad_token_falls_back_and_a_good_one_is_still_tried(zones, sandbox) -> None:
    assert await zones.zone(NOVOSIBIRSK_COUNTER, "not-a-token") == MOSCOW
    assert await zones.zone(NOVOSIBIRSK_COUNTER, "not-a-token") == MOSCOW
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 2


async def test_a_fallback_from_cached_does_not_stop_a_fetch(zones, sandbox) -> None:
    """A webhook's submission (cached) before the zone was ever read, then the webhook changed (zone)."""
    assert await zones.cached(NOVOSIBIRSK_COUNTER) == MOSCOW
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == NOVOSIBIRSK
    assert await zones.cached(NOVOSIBIRSK_COUNTER) == NOVOSIBIRSK
    assert asked(sandbox, NOVOSIBIRSK_COUNTER) == 1


async def test_an_unknown_zone_name_falls_back_with_a_warning(zones, sandbox, pool, caplog) -> None:
    sandbox.app[COUNTERS].zones[NOVOSIBIRSK_COUNTER] = "Mars/Olympus_Mons"  # past the control API's check
    with caplog.at_level(logging.WARNING, logger="shared.counter_zones"):
        assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == MOSCOW
    assert any("Mars/Olympus_Mons" in r.getMessage() for r in caplog.records)
    assert await counter_zones.get(pool, NOVOSIBIRSK_COUNTER) is None  # never kept


async def test_the_fallback_is_counter_timezone(sandbox, pool, http, settings) -> None:
    sandbox.app[FAULTS].add(r"/counter/\d+$", 503, times=None)
    zones = CounterZones(pool, http, override(settings, counter_timezone="Asia/Yekaterinburg"))
    assert await zones.zone(NOVOSIBIRSK_COUNTER, TOKEN) == ZoneInfo("Asia/Yekaterinburg")
    assert await zones.cached(MOSCOW_COUNTER) == ZoneInfo("Asia/Yekaterinburg")


async def test_today_is_the_counters_date(zones, sandbox) -> None:
    """19:30 UTC on July 1st is already July 2nd in Novosibirsk, still July 1st in Moscow."""
    moment = dt.datetime(2025, 7, 1, 19, 30, tzinfo=dt.UTC)
    assert await zones.today(NOVOSIBIRSK_COUNTER, TOKEN, moment) == dt.date(2025, 7, 2)
    assert await zones.today(MOSCOW_COUNTER, TOKEN, moment) == dt.date(2025, 7, 1)


def _zone_failures() -> float:
    labels = {"outcome": "fallback"}
    return REGISTRY.get_sample_value("metrika_score_counter_zone_failures_total", labels) or 0.0
