"""Errors to JSON in the seed's shape, and API-key authentication of management endpoints."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway import keys, limits
from shared import errors

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# what a client is told to wait when Postgres is away (the pool reconnects by itself once it is back)
UNAVAILABLE_RETRY_AFTER_S = 5
UNAVAILABLE_DETAIL = "The database is unavailable; retry shortly"


def public(handler: Handler) -> Handler:
    """Mark a handler as reachable without an API key (it authenticates some other way, or not at all)."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def validation_detail(
    exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)
) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def client_address(request: web.Request) -> str:
    """The peer's address (behind a proxy, the proxy's: X-Forwarded-For is not to be trusted here)."""
    return request.remote or "unknown"


def shown_path(request: web.Request) -> str:
    """The path for a log line: a webhook secret carried in it (a CRM's URL) is masked."""
    secret = request.match_info.get("secret")
    return request.path.replace(secret, "***") if secret else request.path


class _Every:
    """True at most once per `interval_s` (an outage answers thousands of requests: log a few of them)."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval_s
        return True


_log_unavailable = _Every(10.0)


def _client_left(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place an error becomes an answer: every handler raises errors.AppError (or lets a
    ValidationError, aiohttp's own HTTP error or an unexpected exception through), never builds one."""
    try:
        return await handler(request)
    except errors.AppError as exc:
        if exc.status >= 500 and exc.status != 503:  # a bug or a dead letter's reason: not the client's
            return _internal_error(request)
        return error_response(exc)
    except ValidationError as exc:
        return error_response(errors.Unprocessable(validation_detail(exc)))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own: no route (404), wrong method (405), a body over client_max_size (413)
        return error_response(errors.AppError(exc.reason, headers=_keep_headers(exc), status=exc.status))
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and _client_left(request):
            # the client went away while its body was being read: nobody to answer, nothing went wrong here
            # (a reset of Postgres' connection is an outage: answered 503 below)
            logger.debug("client left during %s %s", request.method, shown_path(request))
            return web.Response(status=400)
        if errors.is_unavailable(exc):  # Postgres is down, restarting or unreachable: not our bug
            if _log_unavailable():
                logger.warning(
                    "503 on %s %s, a dependency is unavailable: %r", request.method, shown_path(request), exc
                )
            return error_response(errors.Unavailable(UNAVAILABLE_DETAIL))
        return _internal_error(request)


def error_response(exc: errors.AppError) -> web.Response:
    """`{"detail": ..., **extra}` with the error's status and headers (a 503 says when to retry)."""
    headers = exc.headers
    if exc.status == 503 and "Retry-After" not in headers:
        headers = {**headers, "Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}
    # UTF-8 as it is, as the replaced API answered (FastAPI's JSONResponse)
    body = json.dumps({"detail": exc.detail, **exc.extra}, ensure_ascii=False)
    response = web.json_response(text=body, status=exc.status, headers=headers or None)
    if exc.close_connection:
        response.force_close()
    return response


def _internal_error(request: web.Request) -> web.Response:
    # the id ties the answer to the logged traceback; the exception itself is not the client's business
    error_id = uuid.uuid4().hex
    logger.exception("unhandled error %s on %s %s", error_id, request.method, shown_path(request))
    return web.json_response({"detail": "Internal server error", "error_id": error_id}, status=500)


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An API key for every endpoint not marked @public; failures are limited per client address, calls
    per key (gateway.limits)."""
    route_handler = request.match_info.handler
    if getattr(route_handler, "public", False) or request.match_info.http_exception is not None:
        return await handler(request)
    failures = request.app[keys.AUTH_FAILURES]
    address = client_address(request)
    failures.check(address)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        failures.add(address)
        raise errors.Unauthorized("Missing API key: send 'Authorization: Bearer <key>'")
    # aiohttp keeps header bytes that are not UTF-8 as surrogates: compare the bytes that were sent
    given = key.strip().encode("utf-8", "surrogateescape")
    # compare against every key so the time taken does not tell which one nearly matched
    matched = False
    for candidate in request.app[keys.API_KEYS]:
        matched |= hmac.compare_digest(candidate, given)
    if not matched:
        failures.add(address)
        raise errors.Unauthorized("Invalid API key")
    settings = request.app[keys.SETTINGS]
    await limits.take_api_call(request.app[keys.PG_LOSSY_POOL], given, settings.api_rate_per_minute)
    return await handler(request)
