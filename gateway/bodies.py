"""Reading and validating request bodies and query strings."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.middlewares import validation_detail

M = TypeVar("M", bound=BaseModel)


def unprocessable(detail: list[dict[str, Any]]) -> web.HTTPException:
    return web.HTTPUnprocessableEntity(
        text=json.dumps({"detail": detail}, ensure_ascii=False), content_type="application/json"
    )


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise unprocessable(
            [{"loc": ["body"], "msg": f"Invalid JSON: {exc}", "type": "json_invalid"}]
        ) from exc


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise unprocessable(validation_detail(exc)) from exc


def parse_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise unprocessable(validation_detail(exc, ("query",))) from exc
