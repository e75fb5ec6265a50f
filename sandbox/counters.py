"""Counters of the Management API emulator (``GET /management/v1/counter/{counterId}``) and their time zones.

Every counter id exists (the Logs API serves simulated visits for any). Its time zone is, by default:
an 8-digit id whose first two digits are a Russian region code in ``REGION_ZONES`` is in that region's
zone (54xxxxxx: Asia/Novosibirsk, 66xxxxxx: Asia/Yekaterinburg, 39xxxxxx: Europe/Kaliningrad,
25xxxxxx: Asia/Vladivostok); every other counter is in Europe/Moscow, Metrika's default. A zone per
counter can be set with ``SandboxConfig.counter_zones`` (``--counter-timezone ID=ZONE``,
``SANDBOX_COUNTER_TIMEZONES``) or ``PUT /sandbox/counters/{id}``, which can also make a counter answer
403 (``"access": "denied"``: the token may not see it) or 404 (``"access": "deleted"``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from sandbox.control import json_object
from sandbox.errors import ApiError

__all__ = [
    "COUNTERS",
    "DEFAULT_ZONE",
    "REGION_ZONES",
    "Counters",
    "default_zone",
    "parse_zones",
    "routes",
]

DEFAULT_ZONE = "Europe/Moscow"
#: the zone of 8-digit counter ids starting with these two digits (Russian region codes)
REGION_ZONES: dict[int, str] = {
    25: "Asia/Vladivostok",
    39: "Europe/Kaliningrad",
    54: "Asia/Novosibirsk",
    66: "Asia/Yekaterinburg",
}
Access = Literal["ok", "denied", "deleted"]
ACCESS: tuple[Access, ...] = ("ok", "denied", "deleted")

routes = web.RouteTableDef()


def default_zone(counter: int) -> str:
    """The documented zone of a counter nobody configured."""
    if 10_000_000 <= counter <= 99_999_999:
        return REGION_ZONES.get(counter // 1_000_000, DEFAULT_ZONE)
    return DEFAULT_ZONE


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(400, "invalid_parameter", f"Unknown time zone '{name}'") from None


def parse_zones(text: str) -> dict[int, str]:
    """``"54000001=Asia/Novosibirsk,123=Europe/Moscow"`` -> {counter: zone} (ValueError if malformed)."""
    zones: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        counter, sep, name = item.partition("=")
        if not sep or not counter.strip().isdigit() or not name.strip():
            raise ValueError(f"expected COUNTER=ZONE, got {item!r}")
        try:
            ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name.strip()!r}") from None
        zones[int(counter)] = name.strip()
    return zones


class Counters:
    """Zone and access of every counter (``app[COUNTERS]``): the configured ones, then the default rule."""

    def __init__(self, zones: Mapping[int, str] | None = None) -> None:
        self.configured = dict(zones or {})
        self.zones: dict[int, str] = dict(self.configured)
        self.access: dict[int, Access] = {}

    def zone_name(self, counter: int) -> str:
        return self.zones.get(counter) or default_zone(counter)

    def zone(self, counter: int) -> ZoneInfo:
        return ZoneInfo(self.zone_name(counter))

    def today(self, counter: int, now: float | None = None) -> date:
        """The counter's local date at ``now`` (Unix seconds; default: the real time)."""
        return datetime.fromtimestamp(time.time() if now is None else now, self.zone(counter)).date()

    def local_date(self, counter: int, timestamp: float) -> date:
        return datetime.fromtimestamp(timestamp, self.zone(counter)).date()

    def set(self, counter: int, zone: str | None = None, access: Access | None = None) -> None:
        if zone is not None:
            _zone(zone)
            self.zones[counter] = zone
        if access is not None:
            self.access[counter] = access

    def clear(self) -> None:
        self.zones = dict(self.configured)
        self.access.clear()

    def info(self, counter: int, now: float | None = None) -> dict[str, Any]:
        """The counter object as ``GET /management/v1/counter/{id}`` answers it (403/404 per its access)."""
        access = self.access.get(counter, "ok")
        if access == "denied":
            raise ApiError(403, "access_denied", "Access is denied")
        if access == "deleted":
            raise ApiError(404, "not_found", f"Counter {counter} not found")
        name = self.zone_name(counter)
        try:
            offset = datetime.fromtimestamp(time.time() if now is None else now, ZoneInfo(name)).utcoffset()
        except (ZoneInfoNotFoundError, ValueError):  # a name set by hand past the control API (tests)
            offset = None
        site = f"shop{counter}.example.ru"
        return {
            "id": counter,
            "status": "Active",
            "owner_login": "sandbox",
            "code_status": "CS_OK",
            "name": f"Sandbox shop {counter}",
            "site": site,
            "site2": {"site": site},
            "type": "simple",
            "favorite": False,
            "permission": "own",
            "create_time": "2020-01-01T00:00:00Z",
            "time_zone_name": name,
            "timezone": name,  # the name issue 12 gives the field; Yandex's own is time_zone_name
            # minutes east of UTC, now
            "time_zone_offset": int(offset.total_seconds() // 60) if offset is not None else 0,
        }

    def to_json(self, counter: int) -> dict[str, Any]:
        return {
            "counter": counter,
            "timezone": self.zone_name(counter),
            "access": self.access.get(counter, "ok"),
        }


COUNTERS = web.AppKey("counters", Counters)


def _counter(request: web.Request) -> int:
    return int(request.match_info["counter_id"])


@routes.get(r"/management/v1/counter/{counter_id:\d+}")
async def counter_info(request: web.Request) -> web.Response:
    return web.json_response({"counter": request.app[COUNTERS].info(_counter(request))})


@routes.get(r"/sandbox/counters/{counter_id:\d+}")
async def get_counter(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTERS].to_json(_counter(request)))


@routes.put(r"/sandbox/counters/{counter_id:\d+}")
async def set_counter(request: web.Request) -> web.Response:
    """Body: ``{"timezone": "Asia/Novosibirsk"}`` and/or ``{"access": "ok" | "denied" | "deleted"}``."""
    body = await json_object(request)
    zone, access = body.get("timezone"), body.get("access")
    if zone is None and access is None:
        raise ApiError(400, "missing_parameter", "Give 'timezone' and/or 'access'")
    if zone is not None and not isinstance(zone, str):
        raise ApiError(400, "invalid_parameter", "'timezone' must be an IANA zone name")
    if access is not None and access not in ACCESS:
        raise ApiError(400, "invalid_parameter", f"'access' must be one of {', '.join(ACCESS)}")
    counters = request.app[COUNTERS]
    counters.set(_counter(request), zone, access)
    return web.json_response(counters.to_json(_counter(request)))


@routes.delete("/sandbox/counters")
async def reset_counters(request: web.Request) -> web.Response:
    """Back to the configured zones and the default rule; every counter accessible."""
    request.app[COUNTERS].clear()
    return web.json_response({"counters": "reset"})
