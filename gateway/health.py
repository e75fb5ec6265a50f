"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.middlewares import public
from shared.db import outbox


@public
async def health(request: web.Request) -> web.Response:
    """200 while Postgres answers; the broker's state and the outbox backlog are reported, not required."""
    pending = await outbox.count_pending(request.app[keys.PG_POOL])
    relay = request.app[keys.RELAY]
    return web.json_response({"status": "ok", "broker_connected": relay.connected, "outbox_pending": pending})
