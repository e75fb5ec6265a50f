"""The Bitrix24 emulator's control API: ``/sandbox/bitrix`` (state, reset) and
``/sandbox/bitrix/deals`` / ``/sandbox/bitrix/leads`` (put a portal's data)."""

from __future__ import annotations

from aiohttp import web

from sandbox.bitrix24_portal import BITRIX
from sandbox.control import json_object
from sandbox.errors import ApiError

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _put(request: web.Request, kind: str) -> web.Response:
    body = await json_object(request)
    key = f"{kind}s"
    code, items = body.get("code"), body.get(key)
    if not isinstance(code, str) or not code.strip() or "/" in code:
        raise ApiError(400, "invalid_parameter", "'code' must be a non-empty string without '/'")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ApiError(400, "invalid_parameter", f"'{key}' must be a list of objects")
    try:
        ids = request.app[BITRIX].put(kind, code, items)
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    return web.json_response({"code": code, key: ids}, status=201)


@routes.post("/sandbox/bitrix/deals")
async def put_deals(request: web.Request) -> web.Response:
    """``{"code": "<webhook code>", "deals": [{"ID": 7, "STAGE_ID": "WON", ...}]}`` -> 201
    ``{"code", "deals": ["7"]}``; the code becomes an accepted webhook."""
    return await _put(request, "deal")


@routes.post("/sandbox/bitrix/leads")
async def put_leads(request: web.Request) -> web.Response:
    """As ``/sandbox/bitrix/deals``, with ``"leads"``."""
    return await _put(request, "lead")


@routes.get("/sandbox/bitrix")
async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[BITRIX].to_json())


@routes.delete("/sandbox/bitrix")
async def clear(request: web.Request) -> web.Response:
    request.app[BITRIX].clear()
    return web.json_response(request.app[BITRIX].to_json())
