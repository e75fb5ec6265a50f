"""The one way the gateway writes a point in time: ISO 8601 in UTC with its offset and microseconds,
e.g. "2026-11-26T19:30:35.123456+00:00" (a task's visits keep Metrika's own "dateTime" text)."""

from __future__ import annotations

import datetime as dt


def iso(value: dt.datetime | None) -> str | None:
    """`value` in UTC as "YYYY-MM-DDTHH:MM:SS.ffffff+00:00"; None stays None (not started, not finished)."""
    if value is None:
        return None
    if value.tzinfo is None:  # timestamptz always comes aware; a naive value is taken as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
