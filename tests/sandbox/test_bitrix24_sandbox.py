"""The Bitrix24 REST emulator over real loopback HTTP: envelope, errors, the request limit, faults."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sandbox.__main__ import parse_args
from sandbox.app import BITRIX, REQUEST_LOG
from sandbox.bitrix24_portal import LeakyBucket
from sandbox.config import DEFAULT_BITRIX_WEBHOOK_CODE
from tests.sandbox.helpers import call

Start = Callable[..., Awaitable[TestServer]]
CODE = DEFAULT_BITRIX_WEBHOOK_CODE
TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00$")


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def put(http: aiohttp.ClientSession, server: TestServer, kind: str, code: str, items: Any) -> Any:
    status, body = await call(
        http, "POST", url(server, f"/sandbox/bitrix/{kind}"), json={"code": code, kind: items}
    )
    assert status == 201, body
    return body


def assert_bitrix_error(status: int, body: Any, code: int, error: str, description: str) -> None:
    assert status == code, body
    assert body == {"error": error, "error_description": description}


@pytest.fixture
async def server(start_sandbox: Start) -> TestServer:
    return await start_sandbox(bitrix_rps=0)


async def test_deal_and_lead_come_in_bitrix24s_envelope(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    deal = {"ID": 759, "TITLE": "Order 42", "STAGE_ID": "WON", "OPPORTUNITY": 15000, "UF_CRM_CLIENT": "1.2"}
    assert await put(http, server, "deals", CODE, [deal]) == {"code": CODE, "deals": ["759"]}
    await put(http, server, "leads", CODE, [{"ID": "31", "STATUS_ID": "CONVERTED", "OPPORTUNITY": 99.5}])

    status, body = await call(http, "GET", url(server, f"/rest/1/{CODE}/crm.deal.get.json?id=759"))
    assert status == 200, body
    assert set(body) == {"result", "time"}
    result = body["result"]
    # Bitrix24 sends ids and amounts as strings; missing standard fields get defaults
    assert result["ID"] == "759" and result["TITLE"] == "Order 42" and result["STAGE_ID"] == "WON"
    assert result["OPPORTUNITY"] == "15000.00" and result["CURRENCY_ID"] == "RUB"
    assert result["UF_CRM_CLIENT"] == "1.2" and result["CONTACT_ID"] is None
    assert ISO.match(result["DATE_MODIFY"])
    timing = body["time"]
    assert set(timing) == TIME_KEYS
    assert timing["start"] <= timing["finish"]
    assert timing["duration"] == pytest.approx(timing["finish"] - timing["start"])
    assert ISO.match(timing["date_start"]) and ISO.match(timing["date_finish"])
    assert isinstance(timing["operating_reset_at"], int)
    assert timing["start"] < timing["operating_reset_at"] <= timing["start"] + 600
    assert timing["operating"] >= timing["processing"] >= 0

    # POST with a JSON body (the docs use both ID and id), a form body, and no .json suffix
    for kwargs, path in [
        ({"json": {"ID": 31}}, "crm.lead.get.json"),
        ({"data": {"id": "31"}}, "crm.lead.get"),
        ({"json": {"id": 31}}, "CRM.LEAD.GET"),
    ]:
        status, body = await call(http, "POST", url(server, f"/rest/7/{CODE}/{path}"), **kwargs)
        assert status == 200, (path, body)
        assert body["result"]["STATUS_ID"] == "CONVERTED" and body["result"]["OPPORTUNITY"] == "99.50"


async def test_errors_use_bitrix24s_codes_and_statuses(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    await put(http, server, "deals", CODE, [{"ID": 1}])
    rest = f"/rest/1/{CODE}"
    status, body = await call(http, "GET", url(server, f"{rest}/crm.deal.get.json?id=2"))
    assert_bitrix_error(status, body, 400, "", "Not found")
    status, body = await call(
        http, "GET", url(server, f"{rest}/crm.lead.get.json?id=1")
    )  # a deal, not a lead
    assert_bitrix_error(status, body, 400, "", "Not found")
    for query in ["", "?id=", "?id=abc", "?id=0", "?id=-3", "?id=1.5"]:
        status, body = await call(http, "GET", url(server, f"{rest}/crm.deal.get.json{query}"))
        assert_bitrix_error(status, body, 400, "", "ID is not defined or invalid")
    status, body = await call(
        http,
        "POST",
        url(server, f"{rest}/crm.deal.get"),
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert_bitrix_error(status, body, 400, "", "ID is not defined or invalid")
    for path in ["/rest/1/wrongcode/crm.deal.get?id=1", f"/rest/abc/{CODE}/crm.deal.get?id=1"]:
        status, body = await call(http, "GET", url(server, path))
        assert_bitrix_error(status, body, 401, "INVALID_CREDENTIALS", "Invalid request credentials")
    status, body = await call(http, "GET", url(server, f"{rest}/crm.deal.list.json"))
    assert_bitrix_error(status, body, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    status, body = await call(http, "GET", url(server, "/rest/nothing"))
    assert_bitrix_error(status, body, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!")


async def test_the_leaky_bucket_refuses_past_the_burst(
    start_sandbox: Start, http: aiohttp.ClientSession
) -> None:
    server = await start_sandbox(bitrix_rps=0.01, bitrix_burst=5)
    await put(http, server, "deals", CODE, [{"ID": 1}])
    statuses = []
    for _ in range(8):
        status, body = await call(http, "GET", url(server, f"/rest/1/{CODE}/crm.deal.get.json?id=1"))
        statuses.append(status)
    assert statuses == [200] * 5 + [503] * 3
    assert_bitrix_error(status, body, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    status, state = await call(http, "GET", url(server, "/sandbox/bitrix"))
    assert state["limit"] == {f"127.0.0.1:{server.port}": {"accepted": 5, "refused": 3}}
    # any method and any webhook of the portal share the bucket, also a request with a wrong code
    status, body = await call(http, "GET", url(server, "/rest/1/other/crm.lead.get.json?id=1"))
    assert status == 503
    # a reset empties it
    await call(http, "DELETE", url(server, "/sandbox/bitrix"))
    status, body = await call(http, "GET", url(server, f"/rest/1/{CODE}/crm.deal.get.json?id=1"))
    assert_bitrix_error(status, body, 400, "", "Not found")  # the data went too


def test_the_bucket_drains_at_its_rate() -> None:
    now = [100.0]
    bucket = LeakyBucket(rate=2.0, capacity=50, clock=lambda: now[0])
    assert all(bucket.admit("portal", "ip") for _ in range(50))
    assert not bucket.admit("portal", "ip")
    assert bucket.admit("portal", "other-ip")  # counted per portal and caller IP
    now[0] += 1.0  # two requests drained
    assert bucket.admit("portal", "ip") and bucket.admit("portal", "ip")
    assert not bucket.admit("portal", "ip")
    assert bucket.to_json() == {"portal": {"accepted": 53, "refused": 2}}
    assert LeakyBucket(rate=0, capacity=1).admit("p", "ip")  # switched off


async def test_faults_apply_under_rest_in_bitrix24s_envelope(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    await put(http, server, "deals", CODE, [{"ID": 1}])
    deal = url(server, f"/rest/1/{CODE}/crm.deal.get.json?id=1")
    cases = [
        ({"status": 500}, 500, "INTERNAL_SERVER_ERROR", "Internal server error"),
        ({"status": 503}, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
        ({"status": 502}, 502, "INTERNAL_SERVER_ERROR", "Backend error (sandbox fault)"),
        ({"status": 429}, 429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit"),
        (
            {
                "status": 401,
                "error_type": "expired_token",
                "message": "The access token provided has expired",
            },
            401,
            "expired_token",
            "The access token provided has expired",
        ),
    ]
    for fault, status_code, error, description in cases:
        status, _ = await call(
            http, "POST", url(server, "/sandbox/faults"), json={"path": r"crm\.deal\.get", **fault}
        )
        assert status == 201
        status, body = await call(http, "GET", deal)
        assert_bitrix_error(status, body, status_code, error, description)
    status, body = await call(http, "GET", deal)
    assert status == 200 and body["result"]["ID"] == "1"
    # "after": the portal answered, the answer was lost
    await call(
        http, "POST", url(server, "/sandbox/faults"), json={"path": "^/rest/", "status": 504, "after": True}
    )
    status, body = await call(http, "GET", deal)
    assert_bitrix_error(status, body, 504, "INTERNAL_SERVER_ERROR", "Backend error (sandbox fault)")


async def test_the_request_log_never_holds_the_webhook_code(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    await call(http, "GET", url(server, f"/rest/1/{CODE}/crm.deal.get.json?id=1"))
    records = server.app[REQUEST_LOG].records
    assert [r.path for r in records] == ["/rest/1/***/crm.deal.get.json"]
    status, body = await call(http, "GET", url(server, "/sandbox/requests"))
    assert CODE not in str(body)


async def test_control_api_puts_data_and_refuses_bad_bodies(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    # a new code becomes an accepted webhook of its own portal data
    await put(http, server, "leads", "fresh", [{"ID": 5}])
    status, body = await call(http, "GET", url(server, "/rest/3/fresh/crm.lead.get?id=5"))
    assert status == 200 and body["result"]["TITLE"] == "Lead #5"
    status, body = await call(http, "GET", url(server, f"/rest/3/{CODE}/crm.lead.get?id=5"))
    assert_bitrix_error(status, body, 400, "", "Not found")
    # the same ID replaces the stored one
    await put(http, server, "leads", "fresh", [{"ID": 5, "STATUS_ID": "JUNK"}])
    assert server.app[BITRIX].get("lead", "fresh", "5")["STATUS_ID"] == "JUNK"  # type: ignore[index]
    bad = [
        {"code": "", "deals": []},
        {"code": "a/b", "deals": []},
        {"code": CODE, "deals": {"ID": 1}},
        {"code": CODE, "deals": [1]},
        {"code": CODE, "deals": [{"TITLE": "no id"}]},
        {"code": CODE, "deals": [{"ID": 0}]},
        {"code": CODE, "deals": [{"ID": True}]},
    ]
    for body in bad:
        status, answer = await call(http, "POST", url(server, "/sandbox/bitrix/deals"), json=body)
        assert status == 400, (body, answer)
        assert answer["errors"][0]["error_type"] == "invalid_parameter"
    status, state = await call(http, "GET", url(server, "/sandbox/bitrix"))
    assert list(state["portals"]) == ["fresh"] and state["portals"]["fresh"]["deals"] == []


def test_cli_flags() -> None:
    _, config = parse_args(
        [
            "--bitrix-webhook-code",
            "a",
            "--bitrix-webhook-code",
            "b",
            "--bitrix-rps",
            "5",
            "--bitrix-burst",
            "250",
        ]
    )
    assert config.bitrix_webhook_codes == frozenset({"a", "b"})
    assert (config.bitrix_rps, config.bitrix_burst) == (5.0, 250)
    _, default = parse_args([])
    assert default.bitrix_webhook_codes == frozenset({CODE})
    assert (default.bitrix_rps, default.bitrix_burst) == (2.0, 50)
