"""/openapi.json describes every route, is valid OpenAPI 3.1, and its examples and the real answers fit
its schemas; /docs works without a CDN or an API key."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import jsonschema
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway import endpoints, openapi
from tests.conftest import completed_task

NO_KEY = {"Authorization": ""}
METHODS = ("get", "post", "put", "patch", "delete")


async def _document(gateway) -> dict[str, Any]:
    resp = await gateway.get("/openapi.json", headers=NO_KEY)
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of `schema` whose $refs ("#/components/...") resolve within the document."""
    registry: Registry = Registry().with_resource("urn:openapi", Resource(doc, DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": "urn:openapi#", **_rebased(schema)}, registry=registry)


def _rebased(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: ("urn:openapi" + v if k == "$ref" else _rebased(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebased(v) for v in schema]
    return schema


def _check(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    problems = [e.message for e in _validator(doc, schema).iter_errors(value)]
    assert not problems, f"{where}: {problems}"


def _answer_schema(doc: dict[str, Any], method: str, template: str, status: int) -> dict[str, Any]:
    operation = doc["paths"][template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {template} does not document {status}"
    return operation["responses"][str(status)]["content"]["application/json"]["schema"]


async def test_every_route_is_documented_and_every_declaration_is_a_route(gateway):
    app = gateway.server.app
    assert openapi.undocumented(app, endpoints.ENDPOINTS) == []
    doc = await _document(gateway)
    routed = {
        (route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"
    }
    documented = {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS}
    assert documented == routed
    assert set(endpoints.ENDPOINTS) == routed  # no declaration left behind by a removed route


async def test_the_document_is_valid_openapi_3_1_and_every_example_fits_its_schema(gateway):
    doc = await _document(gateway)
    assert doc["openapi"] == "3.1.0"
    validate_openapi(doc)
    checked = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation["summary"] and operation["responses"], f"{method} {path}"
            assert "500" in operation["responses"], f"{method} {path} does not document its 500"
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            media = [(f"{method} {path} body", body)] if body else []
            for status, response in operation["responses"].items():
                json_media = response.get("content", {}).get("application/json")
                if json_media and "schema" in json_media:
                    media.append((f"{method} {path} {status}", json_media))
                    assert "example" in json_media, f"{method} {path} {status} has no example"
            for where, one in media:
                if "example" in one:
                    _check(doc, one["schema"], one["example"], where)
                    checked += 1
    for name, schema in doc["components"]["schemas"].items():
        for example in schema.get("examples", []):
            _check(doc, {"$ref": f"#/components/schemas/{name}"}, example, name)
            checked += 1
    assert checked > 80


async def test_security_is_declared_per_route(gateway):
    doc = await _document(gateway)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of API_KEYS: `Authorization: Bearer <key>`",
    }
    assert schemes["WebhookSecret"]["name"] == "X-Webhook-Secret"
    paths = doc["paths"]
    assert paths["/tasks"]["post"]["security"] == [{"ApiKey": []}]
    assert "401" in paths["/tasks"]["post"]["responses"]
    submit = paths["/webhook/offline-conversions/{webhook_id}"]["post"]
    assert submit["security"] == [{"WebhookSecret": []}, {"WebhookSecretQuery": []}]
    assert "401" not in submit["responses"] and "403" in submit["responses"]
    for public in ("/health", "/openapi.json", "/docs"):
        assert paths[public]["get"]["security"] == []
    # the error shapes: a sentence, the 422 list, the invalid rows, the 500 with its id
    assert submit["responses"]["400"]["content"]["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/InvalidRows"}]
    }
    assert paths["/tasks"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Invalid"
    }
    assert "Retry-After" in paths["/tasks"]["post"]["responses"]["429"]["headers"]


async def test_real_answers_fit_the_document(gateway, pool):
    doc = await _document(gateway)
    hooks = "/webhook/offline-conversions"

    async def fits(method: str, path: str, template: str, status: int, **kwargs: Any) -> Any:
        resp = await gateway.request(method, path, **kwargs)
        assert resp.status == status, await resp.text()
        body = await resp.json()
        _check(doc, _answer_schema(doc, method, template, status), body, f"{method} {path} {status}")
        return body

    await fits("GET", "/health", "/health", 200)
    hook = await fits("POST", hooks, hooks, 200, json={"name": "CRM", "counter_id": 123456, "token": "t-1"})
    await fits("GET", hooks, hooks, 200)
    one = f"{hooks}/{{webhook_id}}"
    await fits("PATCH", f"{hooks}/{hook['webhook_id']}", one, 200, json={"description": "the shop"})
    row = {"client_id": "175085690441127503", "target": "purchase", "date_time": "2025-01-01T00:00:00Z"}
    secret = {"X-Webhook-Secret": hook["secret"], **NO_KEY}
    await fits("POST", f"{hooks}/{hook['webhook_id']}", one, 400, json={"conversions": [row]}, headers=secret)
    await fits("POST", f"{hooks}/{hook['webhook_id']}", one, 422, json={"rows": []}, headers=secret)
    await fits("POST", f"{hooks}/{hook['webhook_id']}", one, 403, json={}, headers=NO_KEY)
    task = "/tasks/{task_id}/status"
    await fits("GET", f"/tasks/{uuid.uuid4()}/status", task, 404)
    await fits("GET", f"/tasks/{uuid.uuid4()}/status", task, 401, headers={"Authorization": "Bearer wrong"})
    await fits("POST", "/tasks", "/tasks", 422, json={"date": "yesterday"})
    await fits("POST", "/tasks", "/tasks", 200, json={"date": "2025-07-01", "token": "t", "counter": 1})
    await fits("GET", "/dead-letters", "/dead-letters", 200)
    await fits("POST", "/dead-letters/0/replay", "/dead-letters/{id}/replay", 422)

    # the listings, summary and search, each with one item at least
    done = await completed_task(pool, 3, start=dt.datetime(2025, 7, 1, 10))
    listed = await fits("GET", "/tasks", "/tasks", 200, params={"status": "completed"})
    assert listed["data"]
    await fits("GET", "/tasks", "/tasks", 422, params={"status": "weird"})
    summary = "/tasks/{task_id}/summary"
    assert (await fits("GET", f"/tasks/{done}/summary", summary, 200))["level4_visits"] == 3
    await fits("GET", f"/tasks/{uuid.uuid4()}/summary", summary, 404)
    result = "/tasks/{task_id}/result"
    await fits("GET", f"/tasks/{done}/result", result, 200, params={"client_id": "175085690441127503"})
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    fresh = {
        "client_id": "175085690441127503",
        "target": "purchase",
        "date_time": recent,
        "purchase_id": "o-1",
    }
    batch = await fits(
        "POST", f"{hooks}/{hook['webhook_id']}?partial=true", one, 200,
        json={"conversions": [fresh, {**fresh, "target": ""}]}, headers=secret,
    )  # fmt: skip
    batches = f"{hooks}/{hook['webhook_id']}/batches"
    assert (await fits("GET", batches, f"{hooks}/{{webhook_id}}/batches", 200))["data"]
    await fits("GET", f"{hooks}/{uuid.uuid4()}/batches", f"{hooks}/{{webhook_id}}/batches", 404)
    by_key = f"{hooks}/{{webhook_id}}/batches/{{batch_id}}"
    assert (await fits("GET", f"{batches}/{batch['batch_id']}", by_key, 200))["errors"]
    await fits("GET", f"{batches}/{uuid.uuid4()}", by_key, 404)
    single = {**fresh, "purchase_id": "o-2", "token": "t", "counter": 5}
    await fits("POST", "/conversions/single", "/conversions/single", 200, json=single)
    assert (await fits("GET", "/conversions", "/conversions", 200))["data"]
    found = await fits("GET", "/search", "/search", 200, params={"client_id": "175085690441127503"})
    assert {item["kind"] for item in found["data"]} == {"upload", "webhook_batch"}
    await fits("GET", "/search", "/search", 422)


async def test_docs_page_and_its_files_load_without_a_key_or_a_cdn(gateway):
    resp = await gateway.get("/docs", headers=NO_KEY)
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere
    files = re.findall(r"""(?:src|href)="([^"]+)\"""", page)
    assert sorted(files) == sorted(f"docs/{name}" for name in openapi.DOCS_FILES)
    for name, content_type in openapi.DOCS_FILES.items():
        resp = await gateway.get(f"/docs/{name}", headers=NO_KEY)
        assert resp.status == 200 and resp.content_type == content_type, name
        assert len(await resp.read()) > 500
    bundle = await (await gateway.get("/docs/swagger-ui-bundle.js", headers=NO_KEY)).text()
    assert "SwaggerUIBundle" in bundle
    resp = await gateway.get("/docs/index.html", headers=NO_KEY)
    assert resp.status == 404 and await resp.json() == {"detail": "No such file of the /docs page"}
