"""Errors to JSON in the seed's shape, and API-key authentication of management endpoints."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway import keys
from shared import errors

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.AppError as exc:
        headers = getattr(exc, "headers", None)
        return web.json_response({"detail": exc.detail}, status=exc.status, headers=headers)
    except ValidationError as exc:
        return web.json_response({"detail": validation_detail(exc)}, status=422)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return web.json_response({"detail": exc.reason}, status=exc.status, headers=_keep_headers(exc))
    except ConnectionResetError:
        # the client went away while its body was being read: nobody to answer, nothing went wrong here
        logger.debug("client left during %s %s", request.method, request.path)
        return web.Response(status=400)
    except Exception as exc:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"detail": "Internal server error", "error": type(exc).__name__}, status=500)


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_handler = request.match_info.handler
    if getattr(route_handler, "public", False) or request.match_info.http_exception is not None:
        return await handler(request)
    api_keys = request.app[keys.SETTINGS].api_key_set()
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise errors.Unauthorized("Missing API key: send 'Authorization: Bearer <key>'")
    # compare against every key so the time taken does not tell which one nearly matched
    matched = False
    for candidate in api_keys:
        matched |= hmac.compare_digest(candidate.encode(), key.strip().encode())
    if not matched:
        raise errors.Unauthorized("Invalid API key")
    return await handler(request)
