"""The `notification` object of a status answer: how the summary sent to a callback URL fared."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from gateway import timestamps


def notification(url: str | None, latest: asyncpg.Record | None) -> dict[str, Any] | None:
    """None when no callback URL applies; `pending` until the summary is delivered or given up (also
    while the task or batch has not finished: nothing was sent yet)."""
    if latest is not None:
        delivered_at: dt.datetime | None = latest["delivered_at"]
        return {
            "url": latest["url"],
            "status": latest["status"],
            "attempts": latest["attempts"],
            "last_error": latest["last_error"],
            "delivered_at": timestamps.iso(delivered_at),
        }
    if url is None:
        return None
    return {"url": url, "status": "pending", "attempts": 0, "last_error": None, "delivered_at": None}
