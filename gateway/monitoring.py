"""Monitoring of the gateway: a request id and the HTTP metrics for every request, and GET /metrics."""

from __future__ import annotations

import asyncio
import functools
import hmac
import time

from aiohttp import web
from prometheus_client import Counter, Histogram

from gateway import keys
from gateway.middlewares import Handler, public
from shared import errors, logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
# the route label of a request that matched no route (never its raw path: it may hold ids or secrets)
UNMATCHED = "unmatched"
# the method label of any other method a client may send (labels stay few)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: binds the request id (the client's X-Request-ID if usable, else a new one) to every log
    line of the request, and counts the answer by route template and status."""
    request_id = logs.request_id(request.headers.get(REQUEST_ID_HEADER))
    request[keys.REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    try:
        with logs.bind(request_id=request_id):
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer (nginx's word for it)
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in METHODS else "OTHER"
        count, duration = _series(method, route, status)
        count.inc()
        duration.observe(time.perf_counter() - started)


@functools.cache
def _series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled children of one method, route and status (looked up once: labels() takes a lock)."""
    labels = (method, route, str(status))
    return metrics.HTTP_REQUESTS.labels(*labels), metrics.HTTP_DURATION.labels(*labels)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer (a streamed one, an error) names its request id."""
    request_id = request.get(keys.REQUEST_ID)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id


@public
async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text; `Authorization: Bearer <METRICS_TOKEN>` if that is set."""
    token = request.app[keys.SETTINGS].metrics_token
    if token is not None and token.get_secret_value():
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(expected, given_bytes):
            raise errors.Unauthorized("Missing or wrong metrics token: send 'Authorization: Bearer <token>'")
    state = request.app[keys.METRICS_STATE]
    await state.refresh(request.app[keys.PG_POOL], request.app[keys.RELAY].connection)
    return metrics.response(state.registry)
