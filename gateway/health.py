"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import keys
from gateway.middlewares import UNAVAILABLE_RETRY_AFTER_S, public
from shared import errors
from shared.db import outbox

# a health check answers within this, also when Postgres hangs instead of refusing
DATABASE_TIMEOUT_S = 5.0


@public
async def health(request: web.Request) -> web.Response:
    """200 while Postgres answers, 503 while it does not; the broker's state and the outbox backlog are
    reported, not required."""
    relay = request.app[keys.RELAY]
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            pending = await outbox.count_pending(request.app[keys.PG_POOL])
    except Exception as exc:
        if not errors.is_unavailable(exc):  # TimeoutError included
            raise
        return web.json_response(
            {
                "status": "unavailable",
                "database": False,
                "broker_connected": relay.connected,
                "outbox_pending": None,
            },
            status=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )
    return web.json_response(
        {"status": "ok", "database": True, "broker_connected": relay.connected, "outbox_pending": pending}
    )
