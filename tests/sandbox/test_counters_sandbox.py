"""The Management API's counter object (GET /management/v1/counter/{id}) and counters' time zones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sandbox.__main__ import parse_args
from sandbox.app import DAYS
from sandbox.config import SandboxConfig
from sandbox.counters import Counters, default_zone
from sandbox.days import DayStore
from sandbox.faults import Faults
from sandbox.log_requests import LogRequestStore
from tests.sandbox.helpers import assert_error, call

MOSCOW_COUNTER = 4242
NOVOSIBIRSK_COUNTER = 54_000_001

Start = Callable[..., Awaitable[TestServer]]


def url(server: TestServer, counter: int | str) -> str:
    return str(server.make_url(f"/management/v1/counter/{counter}"))


async def test_the_counter_object_names_its_zone(http: aiohttp.ClientSession, start_sandbox: Start) -> None:
    server = await start_sandbox()
    status, body = await call(http, "GET", url(server, MOSCOW_COUNTER))
    assert status == 200, body
    counter = body["counter"]
    assert counter["id"] == MOSCOW_COUNTER
    assert counter["status"] == "Active"
    assert counter["site2"] == {"site": counter["site"]}
    assert counter["time_zone_name"] == "Europe/Moscow"
    assert counter["time_zone_offset"] == 180

    status, body = await call(http, "GET", url(server, NOVOSIBIRSK_COUNTER))
    assert status == 200, body
    assert body["counter"]["time_zone_name"] == "Asia/Novosibirsk"
    assert body["counter"]["time_zone_offset"] == 420


def test_the_default_rule_puts_region_coded_counters_in_their_zone() -> None:
    assert default_zone(54_123_456) == "Asia/Novosibirsk"
    assert default_zone(66_000_000) == "Asia/Yekaterinburg"
    assert default_zone(39_999_999) == "Europe/Kaliningrad"
    assert default_zone(25_000_001) == "Asia/Vladivostok"
    # not 8 digits, or another region: Metrika's default
    assert default_zone(54) == "Europe/Moscow"
    assert default_zone(540_000_000) == "Europe/Moscow"
    assert default_zone(77_000_000) == "Europe/Moscow"


@pytest.mark.parametrize(
    ("headers", "code", "error_type"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer sandbox-token"}, 401, "unauthorized"),
        ({"Authorization": "OAuth wrong"}, 403, "invalid_token"),
    ],
)
async def test_auth_errors(
    http: aiohttp.ClientSession, start_sandbox: Start, headers: dict[str, str], code: int, error_type: str
) -> None:
    server = await start_sandbox()
    status, body = await call(http, "GET", url(server, MOSCOW_COUNTER), headers=headers)
    assert_error(status, body, code, error_type)


async def test_zone_and_access_set_per_counter(http: aiohttp.ClientSession, start_sandbox: Start) -> None:
    server = await start_sandbox(counter_zones={7: "Asia/Tokyo"})
    status, body = await call(http, "GET", url(server, 7))
    assert body["counter"]["time_zone_name"] == "Asia/Tokyo"

    control = str(server.make_url(f"/sandbox/counters/{MOSCOW_COUNTER}"))
    status, body = await call(http, "PUT", control, json={"timezone": "America/New_York"})
    assert status == 200, body
    assert body == {"counter": MOSCOW_COUNTER, "timezone": "America/New_York", "access": "ok"}
    status, body = await call(http, "GET", url(server, MOSCOW_COUNTER))
    assert body["counter"]["time_zone_name"] == "America/New_York"

    status, body = await call(http, "PUT", control, json={"timezone": "Mars/Olympus"})
    assert_error(status, body, 400, "invalid_parameter")

    await call(http, "PUT", control, json={"access": "denied"})
    status, body = await call(http, "GET", url(server, MOSCOW_COUNTER))
    assert_error(status, body, 403, "access_denied", "Access is denied")
    await call(http, "PUT", control, json={"access": "deleted"})
    status, body = await call(http, "GET", url(server, MOSCOW_COUNTER))
    assert_error(status, body, 404, "not_found")

    await call(http, "DELETE", str(server.make_url("/sandbox/counters")))
    status, body = await call(http, "GET", url(server, MOSCOW_COUNTER))
    assert status == 200 and body["counter"]["time_zone_name"] == "Europe/Moscow"
    status, body = await call(http, "GET", url(server, 7))
    assert body["counter"]["time_zone_name"] == "Asia/Tokyo"  # configured zones stay


def test_zones_from_the_command_line_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_COUNTER_TIMEZONES", "1=Asia/Tokyo, 2=Europe/Kaliningrad")
    _, config = parse_args(["--counter-timezone", "2=Asia/Novosibirsk"])
    assert config.counter_zones == {1: "Asia/Tokyo", 2: "Asia/Novosibirsk"}
    monkeypatch.setenv("SANDBOX_COUNTER_TIMEZONES", "1=Nowhere/Land")
    with pytest.raises(SystemExit):
        parse_args([])


def test_a_counters_today_is_its_local_date() -> None:
    """19:30 UTC on July 1st is 22:30 in Moscow and 02:30 on July 2nd in Novosibirsk: July 1st is over
    for the Novosibirsk counter only, so only it may ask the Logs API for it."""
    config = SandboxConfig()
    moment = dt.datetime(2025, 7, 1, 19, 30, tzinfo=dt.UTC).timestamp()
    store = LogRequestStore(
        config, DayStore(10, 0), Faults(), counters=Counters(config.counter_zones), now=lambda: moment
    )
    assert store.today(MOSCOW_COUNTER) == dt.date(2025, 7, 1)
    assert store.today(NOVOSIBIRSK_COUNTER) == dt.date(2025, 7, 2)
    query = {"source": "visits", "date1": "2025-07-01", "date2": "2025-07-01", "fields": "ym:s:visitID"}
    assert store.parse(NOVOSIBIRSK_COUNTER, query).date2 == dt.date(2025, 7, 1)
    with pytest.raises(Exception, match="earlier than today"):
        store.parse(MOSCOW_COUNTER, query)


async def test_a_novosibirsk_days_visits_are_its_local_day(
    http: aiohttp.ClientSession, start_sandbox: Start
) -> None:
    """The visits of a day are that day on the counter's own clock: naive times from 00:00 to 23:59:59."""
    server = await start_sandbox(visits_per_day=300, today=dt.date(2025, 7, 3))
    visits = (await server.app[DAYS].day(NOVOSIBIRSK_COUNTER, dt.date(2025, 7, 1))).visits
    times = [dt.datetime.fromisoformat(value) for value in visits["ym:s:dateTime"]]
    assert {t.date() for t in times} == {dt.date(2025, 7, 1)}
    assert all(t.tzinfo is None for t in times)
