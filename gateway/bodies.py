"""Reading and validating request bodies and query strings."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway import keys
from gateway.middlewares import validation_detail
from shared import errors

M = TypeVar("M", bound=BaseModel)

# the webhook document allows 10 MB bodies; everything else is far smaller
MAX_BODY_BYTES = 10 * 1024 * 1024
BODY_TOO_LARGE = (
    f"Request body is larger than the 10 MB limit ({MAX_BODY_BYTES} bytes); send fewer conversions"
)


async def read_raw(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The body, with the size limit stated in the answer (aiohttp's own 413 does not say it), read
    within BODY_READ_TIMEOUT_S (a body trickling in does not hold a connection and its memory for ever)."""
    too_large = BODY_TOO_LARGE if max_bytes == MAX_BODY_BYTES else f"Request body over {max_bytes} bytes"
    if request.content_length is not None and request.content_length > max_bytes:
        raise errors.PayloadTooLarge(too_large)
    timeout_s = request.app[keys.SETTINGS].body_read_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body without Content-Length
        raise errors.PayloadTooLarge(too_large) from None
    except TimeoutError:
        raise errors.RequestTimeout(f"The request body did not arrive within {timeout_s:g} s") from None
    if len(raw) > max_bytes:
        raise errors.PayloadTooLarge(too_large)
    return raw


async def read_json(request: web.Request) -> Any:
    """The JSON body (see read_raw)."""
    raw = await read_raw(request)
    try:
        return json.loads(raw)
    # ValueError covers bad JSON, bad UTF-8 and integers past Python's digit limit; deep nesting recurses
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise errors.Unprocessable(
            [{"loc": ["body"], "msg": f"Invalid JSON: {reason}", "type": "json_invalid"}]
        ) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.Unprocessable(validation_detail(exc)) from exc


def parse_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise errors.Unprocessable(validation_detail(exc, ("query",))) from exc
