"""A Bitrix24 REST emulator: ``crm.deal.get`` and ``crm.lead.get`` through an inbound-webhook URL,
``/rest/{user_id}/{code}/{method}[.json]``, with Bitrix24's JSON envelope (``result`` + ``time``, or
``error`` + ``error_description``) and its per-portal request limit (``QUERY_LIMIT_EXCEEDED``).

Sources: bitrix24/b24restdocs ``local-integrations/local-webhooks.md`` (URL shape, ``.json`` optional,
GET or POST), ``api-reference/crm/deals/crm-deal-get.md`` and ``crm/leads/crm-lead-get.md`` (answers and
method errors, e.g. 400 ``{"error": "", "error_description": "Not found"}``), ``_includes/system-errors.md``
(``QUERY_LIMIT_EXCEEDED``/503, ``INVALID_CREDENTIALS``/401, ``ERROR_METHOD_NOT_FOUND``/404,
``INTERNAL_SERVER_ERROR``/500, ``OPERATION_TIME_LIMIT``/429) and ``limits.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from sandbox.bitrix24_control import routes as control_routes
from sandbox.bitrix24_portal import BITRIX, BitrixPortals, LeakyBucket, time_block
from sandbox.clock import sandbox_now
from sandbox.config import SandboxConfig
from sandbox.errors import ApiError, default_error_type

__all__ = [
    "BITRIX",
    "METHODS",
    "REST_PREFIX",
    "BitrixError",
    "bitrix_envelope_middleware",
    "setup_bitrix24",
]

log = logging.getLogger(__name__)

REST_PREFIX = "/rest/"
#: emulated methods -> the kind of entity they read
METHODS = {"crm.deal.get": "deal", "crm.lead.get": "lead"}

#: Bitrix24's system error for a status, used for faults injected without an explicit ``error_type``
#: and for unknown paths under /rest/
_SYSTEM_ERRORS = {
    401: ("INVALID_CREDENTIALS", "Invalid request credentials"),
    404: ("ERROR_METHOD_NOT_FOUND", "Method not found!"),
    429: ("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit"),
    500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
    503: ("QUERY_LIMIT_EXCEEDED", "Too many requests"),
}

routes = web.RouteTableDef()


class BitrixError(Exception):
    """A refusal rendered as ``{"error": ..., "error_description": ...}`` (``error`` may be empty, as
    Bitrix24's CRM methods send it)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description


def error_response(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _system_error(status: int, fallback: str) -> tuple[str, str]:
    if status in _SYSTEM_ERRORS:
        return _SYSTEM_ERRORS[status]
    return ("INTERNAL_SERVER_ERROR", fallback) if status >= 500 else ("", fallback)


@web.middleware
async def bitrix_envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under /rest/ in Bitrix24's envelope: the handler's own errors, injected faults (a
    fault's explicit ``error_type`` is the code; without one, the status's system error), unknown paths."""
    if not request.path.startswith(REST_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except BitrixError as exc:
        return error_response(exc.status, exc.error, exc.description)
    except ApiError as exc:
        if exc.error_type != default_error_type(exc.status):
            return error_response(exc.status, exc.error_type, exc.message)
        return error_response(exc.status, *_system_error(exc.status, exc.message))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, *_system_error(exc.status, exc.reason))
    except Exception:
        log.exception("bitrix24 emulator failed: %s %s", request.method, request.path.split("/")[-1])
        return error_response(500, *_SYSTEM_ERRORS[500])


async def _params(request: web.Request) -> dict[str, Any]:
    """The method's parameters: the query string, overridden by a JSON or form body (names as sent)."""
    params: dict[str, Any] = dict(request.query)
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params.update(await request.post())
    return params


def _entity_id(params: Mapping[str, Any]) -> str:
    """``id`` (any case, as the docs use both ``id`` and ``ID``) as a positive integer's digits."""
    raw = next((v for k, v in params.items() if k.lower() == "id"), None)
    text = str(raw).strip() if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    if not text.isdigit() or int(text) <= 0:
        raise BitrixError(400, "", "ID is not defined or invalid")
    return str(int(text))


@routes.route("*", "/rest/{user_id}/{code}/{method}")
async def rest_call(request: web.Request) -> web.Response:
    portals = request.app[BITRIX]
    start = portals.now()
    portal = request.host
    if not portals.limit.admit(portal, request.remote or "unknown"):
        raise BitrixError(503, *_SYSTEM_ERRORS[503])
    user_id, code = request.match_info["user_id"], request.match_info["code"]
    if not user_id.isdigit() or int(user_id) <= 0 or code not in portals.codes:
        raise BitrixError(401, *_SYSTEM_ERRORS[401])
    method = request.match_info["method"].lower().removesuffix(".json")
    kind = METHODS.get(method)
    if kind is None:
        raise BitrixError(404, *_SYSTEM_ERRORS[404])
    item = portals.get(kind, code, _entity_id(await _params(request)))
    if item is None:
        raise BitrixError(400, "", "Not found")
    finish = portals.now()
    operating, reset_at = portals.record_run(portal, method, start, finish - start)
    return web.json_response(
        {"result": item, "time": time_block(start, finish, finish - start, operating, reset_at)}
    )


def setup_bitrix24(app: web.Application, config: SandboxConfig) -> BitrixPortals:
    """Routes and state of the emulator; ``bitrix_envelope_middleware`` must be among the app's
    middlewares, inside the Yandex error middleware."""
    portals = BitrixPortals(
        config.bitrix_webhook_codes,
        LeakyBucket(config.bitrix_rps, config.bitrix_burst),
        now=lambda: sandbox_now(config),
    )
    app[BITRIX] = portals
    app.router.add_routes(routes)
    app.router.add_routes(control_routes)
    return portals
