"""HTTP routes of the offline-conversions emulator
(``/management/v1/counter/{counterId}/offline_conversions/...``) and its wiring with goals."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from sandbox.clock import sandbox_now
from sandbox.config import SandboxConfig
from sandbox.conversion_csv import CLIENT_ID_TYPES, parse_conversions
from sandbox.conversions_control import routes as control_routes
from sandbox.counters import Counters
from sandbox.days import DayStore
from sandbox.errors import ApiError
from sandbox.faults import Faults
from sandbox.goals import GOALS, GoalStore
from sandbox.goals import routes as goal_routes
from sandbox.logs_api import DAYS
from sandbox.uploadings import CONVERSIONS, UPLOADINGS, ConversionLog, UploadingStore
from sandbox.visitors import VISITORS, Visitors

__all__ = ["CONVERSIONS", "GOALS", "MAX_COMMENT", "UPLOADINGS", "VISITORS", "routes", "setup_conversions"]

MAX_COMMENT = 255
COUNTER = r"/management/v1/counter/{counter_id:\d+}"
_CHUNK = 1 << 16

routes = web.RouteTableDef()


def _counter(request: web.Request) -> int:
    return int(request.match_info["counter_id"])


def _client_id_type(query: Mapping[str, str]) -> str:
    raw = query.get("client_id_type", "").strip()
    if not raw:
        raise ApiError(400, "missing_parameter", "Required parameter 'client_id_type' is missing")
    if raw.upper() not in CLIENT_ID_TYPES:
        allowed = ", ".join(CLIENT_ID_TYPES)
        raise ApiError(
            400,
            "invalid_parameter",
            f"Wrong value of parameter 'client_id_type': '{raw}', allowed: {allowed}",
        )
    return raw.upper()


def _comment(query: Mapping[str, str]) -> str | None:
    comment = query.get("comment")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ApiError(
            400, "invalid_parameter", f"Parameter 'comment' must not exceed {MAX_COMMENT} characters"
        )
    return comment


def _check_type(query: Mapping[str, str]) -> None:
    kind = query.get("type", "BASIC").strip().upper() or "BASIC"
    if kind != "BASIC":
        raise ApiError(400, "invalid_parameter", f"Uploading type '{kind}' is not emulated; only BASIC is")


async def _read_file(request: web.Request, limit: int) -> bytes:
    """The bytes of the multipart part named ``file`` (other parts are skipped)."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(
            400, "missing_parameter", "The request must be multipart/form-data with a part named 'file'"
        )
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                await part.release()
                continue
            data = bytearray()
            while chunk := await part.read_chunk(_CHUNK):
                data += chunk
                if len(data) > limit:
                    raise ApiError(
                        400, "invalid_uploading", f"The file is larger than 1 GB (limit {limit} bytes)"
                    )
            return bytes(data)
    # aiohttp's multipart reader: ValueError/AssertionError for a broken structure, BadHttpMessage (an
    # HttpProcessingError) for a broken part header
    except (ValueError, AssertionError) as exc:
        raise ApiError(400, "invalid_parameter", f"Malformed multipart body: {exc}") from None
    except HttpProcessingError as exc:
        raise ApiError(400, "invalid_parameter", f"Malformed multipart body: {exc.message}") from None
    raise ApiError(400, "missing_parameter", "Required multipart part 'file' is missing")


def _int_param(query: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ApiError(400, "invalid_parameter", f"Wrong value of parameter '{name}': '{raw}'")
    return int(raw)


@routes.post(COUNTER + "/offline_conversions/upload")
async def upload(request: web.Request) -> web.Response:
    store = request.app[UPLOADINGS]
    client_id_type = _client_id_type(request.query)
    comment = _comment(request.query)
    _check_type(request.query)
    data = await _read_file(request, store.config.max_upload_bytes)
    now = sandbox_now(store.config)
    parsed = await asyncio.to_thread(parse_conversions, data, client_id_type, now)
    uploading = store.create(_counter(request), client_id_type, comment, parsed)
    return web.json_response({"uploading": uploading.to_json()})


@routes.get(COUNTER + "/offline_conversions/uploading/{uploading_id}")
async def uploading_info(request: web.Request) -> web.Response:
    raw = request.match_info["uploading_id"]
    if not raw.isdigit():
        raise ApiError(400, "invalid_parameter", f"Wrong value of parameter 'id': '{raw}'")
    store = request.app[UPLOADINGS]
    uploading = store.get(_counter(request), int(raw))
    await store.refresh(uploading)
    return web.json_response({"uploading": uploading.to_json()})


@routes.get(COUNTER + "/offline_conversions/uploadings")
async def list_uploadings(request: web.Request) -> web.Response:
    limit = _int_param(request.query, "limit", 10_000, 1)
    offset = _int_param(request.query, "offset", 0, 0)
    store = request.app[UPLOADINGS]
    found = sorted(store.for_counter(_counter(request)), key=lambda u: u.id)[offset : offset + limit]
    for uploading in found:
        await store.refresh(uploading)
    return web.json_response({"uploadings": [u.to_json() for u in found]})


def setup_conversions(
    app: web.Application,
    config: SandboxConfig,
    faults: Faults,
    days: DayStore | None = None,
    counters: Counters | None = None,
) -> UploadingStore:
    """Mount offline conversions, goals and their ``/sandbox/*`` controls on ``app``; the state is
    ``app[UPLOADINGS]``, ``app[CONVERSIONS]``, ``app[GOALS]`` and ``app[VISITORS]``.

    ClientIds are linked against ``days`` (default: the Logs API's ``app[DAYS]``, so the same
    simulated visitors).
    """
    if days is None:
        days = app[DAYS] if DAYS in app else DayStore(config.visits_per_day, config.seed)
    goals = GoalStore(config.default_goals)
    visitors = Visitors(days, config.unknown_visitor_ids)
    conversions = ConversionLog()
    store = UploadingStore(config, goals, visitors, faults, conversions, counters=counters)
    app[GOALS] = goals
    app[VISITORS] = visitors
    app[CONVERSIONS] = conversions
    app[UPLOADINGS] = store
    app.router.add_routes(routes)
    app.router.add_routes(goal_routes)
    app.router.add_routes(control_routes)
    return store
