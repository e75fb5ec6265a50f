"""Paginated listings: the `limit` / `offset` query every listing takes, and the answer's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

# Postgres' OFFSET takes a bigint; far past any listing's length, and within it
MAX_OFFSET = 2**31 - 1


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


def answer(data: Sequence[Any], total: int, query: PageQuery) -> web.Response:
    """`{"data": [...], "pagination": {"total", "limit", "offset", "has_more"}}`"""
    pagination = {
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
        "has_more": query.offset + len(data) < total,
    }
    return web.json_response({"data": list(data), "pagination": pagination})


def timestamp(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset, e.g. 2026-11-26T19:30:35.123456+00:00 (one format everywhere)."""
    return value.astimezone(dt.UTC).isoformat() if value is not None else None
