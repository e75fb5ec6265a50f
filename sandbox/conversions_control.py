"""``/sandbox/conversions`` (the lines every accepted upload carried) and ``/sandbox/clients`` (visitors
that link) control endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.control import json_object
from sandbox.errors import ApiError
from sandbox.uploadings import CONVERSIONS
from sandbox.visitors import VISITORS

__all__ = ["routes"]

routes = web.RouteTableDef()


def _counter_param(request: web.Request) -> int | None:
    raw = request.query.get("counter", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ApiError(400, "invalid_parameter", f"Wrong value of parameter 'counter': '{raw}'")
    return int(raw)


def _strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ApiError(400, "invalid_parameter", f"'{name}' must be a list of strings")
    return [str(v) for v in value]


def _clients_json(request: web.Request, counter: int | None) -> dict[str, Any]:
    visitors = request.app[VISITORS]
    registered = {
        str(c): sorted(ids) for c, ids in visitors.registered.items() if counter is None or c == counter
    }
    return {"registered": registered, "unknown_ids": sorted(visitors.unknown_ids)}


@routes.get("/sandbox/conversions")
async def list_conversions(request: web.Request) -> web.Response:
    return web.json_response({"lines": request.app[CONVERSIONS].to_json(_counter_param(request))})


@routes.delete("/sandbox/conversions")
async def clear_conversions(request: web.Request) -> web.Response:
    request.app[CONVERSIONS].clear()
    return web.json_response({"lines": []})


@routes.post("/sandbox/clients")
async def register_clients(request: web.Request) -> web.Response:
    """Body: ``{"counter": N, "client_ids": [...]}`` and/or ``{"unknown_ids": [...]}``."""
    body = await json_object(request)
    client_ids, unknown = _strings(body, "client_ids"), _strings(body, "unknown_ids")
    if "client_ids" not in body and "unknown_ids" not in body:
        raise ApiError(400, "missing_parameter", "Give 'client_ids' (with 'counter') and/or 'unknown_ids'")
    visitors = request.app[VISITORS]
    counter = body.get("counter")
    if "client_ids" in body:
        if isinstance(counter, bool) or not isinstance(counter, int):
            raise ApiError(400, "missing_parameter", "'counter' (an integer) is required with 'client_ids'")
        visitors.register(counter, client_ids)
    visitors.mark_unknown(unknown)
    return web.json_response(_clients_json(request, None), status=201)


@routes.get("/sandbox/clients")
async def list_clients(request: web.Request) -> web.Response:
    return web.json_response(_clients_json(request, _counter_param(request)))


@routes.delete("/sandbox/clients")
async def clear_clients(request: web.Request) -> web.Response:
    request.app[VISITORS].clear()
    return web.json_response(_clients_json(request, None))
