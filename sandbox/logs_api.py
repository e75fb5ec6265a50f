"""HTTP routes of the Logs API emulator (``/management/v1/counter/{counterId}/logrequest...``)."""

from __future__ import annotations

import logging

from aiohttp import web

from sandbox.config import SandboxConfig
from sandbox.counters import Counters
from sandbox.days import DayStore
from sandbox.errors import STREAMING, ApiError
from sandbox.faults import Faults
from sandbox.log_requests import LogRequest, LogRequestStore
from sandbox.prepared import read_part

__all__ = ["DAYS", "LOG_REQUESTS", "NOT_PROCESSED_MESSAGE", "routes", "setup_logs_api"]

log = logging.getLogger(__name__)

LOG_REQUESTS = web.AppKey("log_requests", LogRequestStore)
DAYS = web.AppKey("days", DayStore)

NOT_PROCESSED_MESSAGE = "Only log of requests in status 'processed' can be downloaded"
COUNTER = r"/management/v1/counter/{counter_id:\d+}"

routes = web.RouteTableDef()


def _counter(request: web.Request) -> int:
    return int(request.match_info["counter_id"])


def _log_request(request: web.Request) -> LogRequest:
    raw = request.match_info["request_id"]
    if not raw.isdigit():
        raise ApiError(400, "invalid_parameter", f"Wrong value of requestId: '{raw}'")
    return request.app[LOG_REQUESTS].get(_counter(request), int(raw))


def _one(request: LogRequest) -> web.Response:
    return web.json_response({"log_request": request.to_json()})


@routes.get(COUNTER + "/logrequests/evaluate")
async def evaluate(request: web.Request) -> web.Response:
    store = request.app[LOG_REQUESTS]
    evaluation = await store.evaluate(_counter(request), store.parse(_counter(request), request.query))
    return web.json_response({"log_request_evaluation": evaluation})


@routes.post(COUNTER + "/logrequests")
async def create(request: web.Request) -> web.Response:
    store = request.app[LOG_REQUESTS]
    return _one(await store.create(_counter(request), store.parse(_counter(request), request.query)))


@routes.get(COUNTER + "/logrequests")
async def list_requests(request: web.Request) -> web.Response:
    store = request.app[LOG_REQUESTS]
    found = store.for_counter(_counter(request))
    for item in found:
        await store.refresh(item)
    return web.json_response({"requests": [item.to_json() for item in found]})


@routes.get(COUNTER + "/logrequest/{request_id}")
async def info(request: web.Request) -> web.Response:
    log_request = _log_request(request)
    await request.app[LOG_REQUESTS].refresh(log_request)
    return _one(log_request)


@routes.post(COUNTER + "/logrequest/{request_id}/clean")
async def clean(request: web.Request) -> web.Response:
    log_request = _log_request(request)
    await request.app[LOG_REQUESTS].clean(log_request)
    return _one(log_request)


@routes.post(COUNTER + "/logrequest/{request_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    log_request = _log_request(request)
    await request.app[LOG_REQUESTS].cancel(log_request)
    return _one(log_request)


@routes.get(COUNTER + "/logrequest/{request_id}/part/{part}/download")
async def download(request: web.Request) -> web.StreamResponse:
    log_request = _log_request(request)
    await request.app[LOG_REQUESTS].refresh(log_request)
    prepared = log_request.prepared
    if log_request.status != "processed" or prepared is None:
        raise ApiError(400, "invalid_parameter", NOT_PROCESSED_MESSAGE)
    raw = request.match_info["part"]
    if not raw.isdigit() or int(raw) >= len(prepared.paths):
        raise ApiError(400, "invalid_parameter", "Incorrect part number")
    response = web.StreamResponse(headers={"Content-Type": "text/tab-separated-values; charset=utf-8"})
    response.enable_chunked_encoding()
    request[STREAMING] = True
    await response.prepare(request)
    try:
        async for chunk in read_part(prepared.paths[int(raw)]):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        log.info("client went away while downloading %s part %s", log_request.request_id, raw)
    return response


def setup_logs_api(
    app: web.Application, config: SandboxConfig, faults: Faults, counters: Counters | None = None
) -> LogRequestStore:
    """Mount the Logs API on ``app``; its state is ``app[LOG_REQUESTS]`` and ``app[DAYS]``. A day is a
    counter's local day (``counters``: their time zones); the simulator's visit times are local times."""
    days = DayStore(config.visits_per_day, config.seed)
    store = LogRequestStore(config, days, faults, counters=counters)
    app[DAYS] = days
    app[LOG_REQUESTS] = store
    app.router.add_routes(routes)
    return store
