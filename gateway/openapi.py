"""The OpenAPI 3.1 description of the gateway, built from its router and the pydantic models, served at
/openapi.json with Swagger UI at /docs (its files come from the swagger-ui-py package: no CDN, works
offline, no API key).

The document is put together with openapi-pydantic (OpenAPI 3.1 objects as pydantic models, and the
JSON Schemas of our models gathered under components/schemas). What each route means is declared once,
as an `Endpoint` in gateway/endpoints.py, keyed by method and path; the paths come from the router
itself, so a route without a declaration is missing from the document, and tests/gateway/test_openapi.py
fails on it.

How to document a new route:
1. Register it in gateway/routes.py as usual.
2. Add `("GET", "/the/{path}"): Endpoint(...)` to ENDPOINTS in gateway/endpoints.py: a summary, `answers`
   ({status: answer model, or None for no body}), `body` / `query` (the pydantic models the handler
   parses with gateway.bodies), the 4xx it raises in `errors`, and `auth` ("api_key", the default;
   "webhook_secret"; "secret_in_path"; "public" for a handler marked @public).
3. An answer model not yet declared goes into gateway/api_models.py with one example (`_shape(...)`).
4. 401/429 (API key), 403/404/429 (webhook secret), 422/413/408 (body or query), 500 and 503 are added
   by themselves; every error has the shape of errors.AppError (api_models.Error, Invalid, InvalidRows).
5. Run tests/gateway/test_openapi.py: every route documented, the document valid, every example valid.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from openapi_pydantic.util import PydanticSchema, construct_open_api_with_schema_class
from openapi_pydantic.v3.v3_1 import (
    Components,
    Header,
    Info,
    MediaType,
    OpenAPI,
    Operation,
    Parameter,
    PathItem,
    RequestBody,
    Response,
    Schema,
    SecurityScheme,
    Tag,
)
from pydantic import BaseModel

from gateway import api_models
from gateway.middlewares import UNAVAILABLE_DETAIL, public
from shared import errors

Auth = Literal["api_key", "webhook_secret", "secret_in_path", "public"]
JSON = "application/json"
TITLE = "metrika-score"
VERSION = "0.1.0"


@dataclass(frozen=True)
class Endpoint:
    """What one route takes and answers (see the module docstring)."""

    summary: str
    tag: str
    answers: Mapping[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: Auth = "api_key"
    description: str = ""
    # 400 may also list the invalid rows (api_models.InvalidRows)
    rows: bool = False
    # a path parameter's JSON Schema, where the default (a UUID for *_id, else a string) does not fit
    path: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # answers that are not JSON: status -> media type
    media: Mapping[int, str] = field(default_factory=dict)


# what a client is told, per error status, in the examples
_EXAMPLE_DETAIL = {
    400: "token is required (in body or env)",
    401: "Invalid API key",
    403: "Invalid webhook secret",
    404: "Not found",
    408: "The request body did not arrive within 30 s",
    409: "Task not finished",
    413: "Request body is larger than the 10 MB limit (10485760 bytes); send fewer conversions",
    429: "Rate limit exceeded: at most 600 management requests per minute per API key; retry in 12 s",
    503: UNAVAILABLE_DETAIL,
}
_RETRY_AFTER = {"Retry-After": Header(description="Seconds to wait", schema=Schema(type="integer"))}
_SECURITY = {
    "ApiKey": SecurityScheme(
        type="http", scheme="bearer", description="One of API_KEYS: `Authorization: Bearer <key>`"
    ),
    "WebhookSecret": SecurityScheme(
        type="apiKey",
        name="X-Webhook-Secret",
        security_scheme_in="header",
        description="The webhook's secret",
    ),
    "WebhookSecretQuery": SecurityScheme(
        type="apiKey",
        name="secret",
        security_scheme_in="query",
        description="The webhook's secret, for a sender that cannot set a header",
    ),
}
_SECURITY_OF: dict[Auth, list[dict[str, list[str]]] | None] = {
    "api_key": [{"ApiKey": []}],
    "webhook_secret": [{"WebhookSecret": []}, {"WebhookSecretQuery": []}],
    "secret_in_path": [],
    "public": [],
}
_TAGS = {
    "tasks": "Scoring tasks: a day of a counter's visits, scored; its level-4+ visits",
    "conversions": "Offline conversions sent to Metrika from a task (bulk) or one at a time (single)",
    "schedules": "Schedules: a counter's yesterday scored (and uploaded) every day, re-scored at D+3",
    "webhooks": "Webhooks that take conversions from CRMs and other systems, and their batches",
    "operations": "Dead letters, health, and this description",
}


def undocumented(app: web.Application, endpoints: Mapping[tuple[str, str], Endpoint]) -> list[str]:
    """The routes of `app` without a declaration, as "METHOD /path"."""
    return [f"{m} {p}" for m, p in _routes(app) if (m, p) not in endpoints]


def document(app: web.Application, endpoints: Mapping[tuple[str, str], Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route of `app`, as JSON-ready data."""
    paths: dict[str, PathItem] = {}
    for method, path in _routes(app):
        endpoint = endpoints.get((method, path))
        if endpoint is None:
            continue  # reported by undocumented(); the test fails on it
        item = paths.setdefault(path, PathItem())
        setattr(item, method.lower(), _operation(method, path, endpoint))
    spec = OpenAPI(
        openapi="3.1.0",
        info=Info(
            title=TITLE,
            version=VERSION,
            description="Scores Yandex Metrika visits (level 4+) and uploads offline conversions. "
            'Errors are `{"detail": ...}`: a sentence, or for 422 the list of problems.',
        ),
        paths=paths,
        tags=[Tag(name=name, description=text) for name, text in _TAGS.items()],
        components=Components(securitySchemes=_SECURITY),
    )
    built = construct_open_api_with_schema_class(spec)
    data: dict[str, Any] = built.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    return data


def _routes(app: web.Application) -> list[tuple[str, str]]:
    found = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):  # add_get adds HEAD by itself
            continue
        found.append((route.method, route.resource.canonical if route.resource else ""))
    return found


def _operation(method: str, path: str, endpoint: Endpoint) -> Operation:
    parameters = [_path_parameter(name, endpoint) for name in re.findall(r"{(\w+)", path)]
    if endpoint.query is not None:
        parameters += _query_parameters(endpoint.query)
    return Operation(
        # "/ui" and "/ui/" are two routes: a trailing slash keeps its own name
        operationId=re.sub(r"\W+", "_", f"{method.lower()}{path}").strip("_")
        + ("_" if path.endswith("/") else ""),
        summary=endpoint.summary,
        description=endpoint.description or None,
        tags=[endpoint.tag],
        parameters=parameters or None,
        requestBody=_request_body(endpoint.body) if endpoint.body else None,
        responses=_responses(endpoint),
        security=_SECURITY_OF[endpoint.auth],
    )


def _path_parameter(name: str, endpoint: Endpoint) -> Parameter:
    schema = endpoint.path.get(name)
    if schema is None:
        schema = {"type": "string", "format": "uuid"} if name.endswith("_id") else {"type": "string"}
    description = "The webhook's secret (the URL a CRM calls)" if name == "secret" else None
    return Parameter.model_validate(
        {"name": name, "in": "path", "required": True, "description": description, "schema": schema}
    )


def _query_parameters(model: type[BaseModel]) -> list[Parameter]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        parameters.append(
            Parameter.model_validate(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": description,
                    "schema": prop,
                }
            )
        )
    return parameters


def _request_body(model: type[BaseModel]) -> RequestBody:
    return RequestBody(
        required=True,
        description=_first_line(model.__doc__),
        content={
            JSON: MediaType(media_type_schema=PydanticSchema(schema_class=model), example=_example(model))
        },
    )


def _responses(endpoint: Endpoint) -> dict[str, Response]:
    shapes: dict[int, Any] = dict(endpoint.answers)
    errors = set(endpoint.errors) | {500}
    if endpoint.auth == "api_key":
        errors |= {401, 429}
    if endpoint.auth in ("webhook_secret", "secret_in_path"):
        errors |= {403, 404, 429}
    if endpoint.body is not None:
        errors |= {408, 413, 422}
    if endpoint.query is not None:
        errors |= {422}
    if endpoint.auth != "public":
        errors |= {503}
    for status in errors - shapes.keys():
        shapes[status] = _error_shape(status, endpoint)
    return {str(status): _response(status, shape, endpoint) for status, shape in sorted(shapes.items())}


def _error_shape(status: int, endpoint: Endpoint) -> Any:
    if status == 422:
        return api_models.Invalid
    if status == 500:
        return api_models.InternalError
    if status == 400 and endpoint.rows:
        return (api_models.Error, api_models.InvalidRows)
    return api_models.Error


def _response(status: int, shape: Any, endpoint: Endpoint) -> Response:
    reason = HTTPStatus(status).phrase
    headers = _RETRY_AFTER if status in (429, 503) else None
    media = endpoint.media.get(status)
    if media is not None:
        return Response(description=reason, content={media: MediaType()})
    if shape is None:
        return Response(description=reason)
    if isinstance(shape, tuple):
        schema = Schema(anyOf=[PydanticSchema(schema_class=one) for one in shape])
        example = _example(shape[-1])
        description = " Or: ".join(_first_line(one.__doc__) or reason for one in shape)
    else:
        schema = PydanticSchema(schema_class=shape)
        example = _example(shape)
        description = _first_line(shape.__doc__) or reason
        if shape is api_models.Error and status in _EXAMPLE_DETAIL:
            example = {"detail": _EXAMPLE_DETAIL[status]}
    content = {JSON: MediaType(media_type_schema=schema, example=example)}
    return Response(description=f"{reason}: {description}", headers=headers, content=content)


def _example(model: type[BaseModel]) -> Any:
    examples = model.model_json_schema().get("examples")
    return examples[0] if examples else None


def _first_line(doc: str | None) -> str | None:
    if not doc or doc.startswith(("Usage docs:", "A base class")):  # pydantic's own docstrings
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


# serving it


def setup(app: web.Application, endpoints: Mapping[tuple[str, str], Endpoint]) -> None:
    """Add /openapi.json, /docs and its files to `app` (last, so that the document lists every route)."""
    built: dict[str, bytes] = {}

    @public
    async def openapi_json(request: web.Request) -> web.Response:
        if "document" not in built:  # the router is complete once the app serves
            built["document"] = json.dumps(document(request.app, endpoints), ensure_ascii=False).encode()
        return web.Response(body=built["document"], content_type=JSON)

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/{file}", docs_file)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>metrika-score API</title>
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: false, presets: [SwaggerUIBundle.presets.apis]});
</script>
</body>
</html>
"""
# the Swagger UI files the page loads (the package ships many more)
DOCS_FILES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}


@public
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=_PAGE, content_type="text/html")


@public
async def docs_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    if name not in DOCS_FILES:
        raise errors.NotFound("No such file of the /docs page")
    response = web.FileResponse(swagger_ui_dir() / name, headers={"Cache-Control": "public, max-age=86400"})
    response.content_type = DOCS_FILES[name]
    return response


def swagger_ui_dir() -> Path:
    """The static files of the swagger-ui-py package (found without importing it: it imports Jinja2)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed: /docs has no files to serve")
    return Path(next(iter(spec.submodule_search_locations))) / "static"
