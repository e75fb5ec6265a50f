"""The sandbox's own HTTP control API: ``/sandbox/faults`` and ``/sandbox/requests``."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from sandbox.errors import ApiError
from sandbox.faults import Faults
from sandbox.request_log import RequestLog

__all__ = ["FAULTS", "REQUEST_LOG", "json_object", "routes"]

FAULTS = web.AppKey("faults", Faults)
REQUEST_LOG = web.AppKey("request_log", RequestLog)

routes = web.RouteTableDef()


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise ApiError(400, "invalid_json", "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "Request body must be a JSON object")
    return body


@routes.post("/sandbox/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Body: an HTTP fault ``{"path": regex, "status": 503, "times": 2, "delay": 0, "method": null,
    "error_type": null, "message": null, "after": false}`` (``after``: the real handler runs first)
    and/or ``{"processing_failed": n}`` and/or
    ``{"linkage_failure": n}`` (the next n conversion uploads end as LINKAGE_FAILURE) and/or
    ``{"evaluation": {"possible": false, "max_possible_day_quantity": -6}, "times": 1}`` and/or
    ``{"never_prepared": [counter, ...]}`` (those counters' log requests stay ``created`` until the faults
    are cleared: a day that never finishes preparing). A fault for one counter is an HTTP fault on its
    path: ``{"path": "/counter/777/", "status": 429, "times": null}`` (always 429), or ``"status": 403,
    "error_type": "invalid_token", "message": "Invalid oauth_token"`` (a token refused for that counter)."""
    body = await json_object(request)
    faults = request.app[FAULTS]
    try:
        if "path" in body:
            faults.add(
                str(body["path"]),
                None if body.get("status") is None else int(body["status"]),
                times=None if body.get("times", 1) is None else int(body.get("times", 1)),
                delay=float(body.get("delay") or 0),
                method=body.get("method"),
                error_type=body.get("error_type"),
                message=body.get("message"),
                after=bool(body.get("after", False)),
            )
        if "processing_failed" in body:
            faults.fail_processing(int(body["processing_failed"]))
        if "linkage_failure" in body:
            faults.fail_linkage(int(body["linkage_failure"]))
        if "never_prepared" in body:
            faults.never_prepare(int(c) for c in body["never_prepared"])
        if "evaluation" in body:
            evaluation = body["evaluation"]
            times = body.get("times", 1)
            faults.override_evaluation(
                bool(evaluation["possible"]),
                int(evaluation["max_possible_day_quantity"]),
                None if times is None else int(times),
            )
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise ApiError(400, "invalid_parameter", f"Bad fault: {exc!r}") from None
    return web.json_response(faults.to_json(), status=201)


@routes.get("/sandbox/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].to_json())


@routes.delete("/sandbox/faults")
async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.json_response(request.app[FAULTS].to_json())


@routes.get("/sandbox/requests")
async def list_requests(request: web.Request) -> web.Response:
    """The requests received, and per counter the requests in flight now and at most so far."""
    log = request.app[REQUEST_LOG]
    return web.json_response({"requests": log.to_json(), **log.in_flight_json()})


@routes.delete("/sandbox/requests")
async def clear_requests(request: web.Request) -> web.Response:
    """Forget the requests; each counter's high-water mark starts again from what is in flight now."""
    log = request.app[REQUEST_LOG]
    log.clear()
    return web.json_response({"requests": [], **log.in_flight_json()})
