"""Yandex's error envelope and the middleware that renders every failure with it."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["STREAMING", "ApiError", "default_error_type", "error_response", "errors_middleware"]

log = logging.getLogger(__name__)

#: request key set by handlers once a streamed body has started (no envelope possible after that)
STREAMING = web.RequestKey("sandbox_streaming", bool)

_ERROR_TYPES = {
    400: "invalid_parameter",
    401: "unauthorized",
    403: "access_denied",
    404: "not_found",
    406: "not_acceptable",
    409: "conflict",
    429: "quota_requests_by_ip",
    504: "timeout",
}


class ApiError(Exception):
    """An API failure rendered as ``{"errors":[...],"code":...,"message":...}``."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


def default_error_type(status: int) -> str:
    """The Yandex error_type most commonly paired with an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "backend_error" if status >= 500 else "invalid_parameter"


def error_response(status: int, error_type: str, message: str) -> web.Response:
    body = {"errors": [{"error_type": error_type, "message": message}], "code": status, "message": message}
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error_type, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 404 else "Not found"
        return error_response(exc.status, default_error_type(exc.status), message)
    except Exception:
        if request.get(STREAMING, False):
            raise
        log.exception("sandbox handler failed: %s %s", request.method, request.path)
        return error_response(500, "backend_error", "Internal server error")
