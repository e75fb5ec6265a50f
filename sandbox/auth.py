"""``Authorization: OAuth <token>`` checking for the Management and Logs APIs."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.errors import ApiError

__all__ = ["API_PREFIX", "TOKEN", "auth_middleware"]

API_PREFIX = "/management/"
#: request key holding the caller's token once authenticated (never logged)
TOKEN = web.RequestKey("sandbox_token", str)


def auth_middleware(tokens: frozenset[str]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "oauth" or not token:
            raise ApiError(401, "unauthorized", "Unauthorized: missing or malformed Authorization header")
        if token not in tokens:
            raise ApiError(403, "invalid_token", "Invalid oauth_token")
        request[TOKEN] = token
        return await handler(request)

    return middleware
