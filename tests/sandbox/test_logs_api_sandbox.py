"""The Logs API emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import pytest
from aiohttp.test_utils import TestServer

from sandbox.__main__ import parse_args
from sandbox.app import DAYS, FAULTS, LOG_REQUESTS, REQUEST_LOG, SandboxConfig
from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS, Day, simulate_day, write_tsv
from tests.sandbox.helpers import AUTH, TOKEN, assert_error, call

TODAY = date(2024, 3, 10)
DAY = date(2024, 3, 9)
COUNTER = 4242
FIELDS = ["ym:s:visitID", "ym:s:clientID", "ym:s:watchIDs", "ym:s:dateTime", "ym:s:startURL"]
NOT_PROCESSED = "Only log of requests in status 'processed' can be downloaded"

Start = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def start(start_sandbox: Start) -> Start:
    return functools.partial(start_sandbox, processing_seconds=0.05, visits_per_day=300, today=TODAY, rps=0)


def api(server: TestServer, path: str, counter: int = COUNTER) -> str:
    return str(server.make_url(f"/management/v1/counter/{counter}{path}"))


def params(
    source: str = "visits", fields: list[str] | None = None, date1: date = DAY, date2: date = DAY
) -> dict[str, str]:
    return {
        "date1": date1.isoformat(),
        "date2": date2.isoformat(),
        "source": source,
        "fields": ",".join(fields or FIELDS),
    }


async def create(
    http: aiohttp.ClientSession, server: TestServer, counter: int = COUNTER, **kw: Any
) -> dict[str, Any]:
    status, body = await call(http, "POST", api(server, "/logrequests", counter), params=params(**kw))
    assert status == 200, body
    return dict(body["log_request"])


async def processed(
    http: aiohttp.ClientSession, server: TestServer, request_id: int, counter: int = COUNTER
) -> dict[str, Any]:
    for _ in range(200):
        status, body = await call(http, "GET", api(server, f"/logrequest/{request_id}", counter))
        assert status == 200, body
        if body["log_request"]["status"] != "created":
            return dict(body["log_request"])
        await asyncio.sleep(0.02)
    raise AssertionError("log request never left 'created'")


def expected_tsv(frame: pd.DataFrame, fields: list[str]) -> str:
    out = io.StringIO()
    write_tsv(frame, fields, out)
    return out.getvalue()


# --- auth and envelope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code", "error_type"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer"}, 401, "unauthorized"),
        ({"Authorization": "OAuth"}, 401, "unauthorized"),
        ({"Authorization": "OAuth wrong-token"}, 403, "invalid_token"),
    ],
)
async def test_auth(
    start: Start, http: aiohttp.ClientSession, headers: dict[str, str], code: int, error_type: str
):
    server = await start()
    status, body = await call(http, "GET", api(server, "/logrequests"), headers=headers)
    assert_error(status, body, code, error_type)
    if code == 403:
        assert body["message"] == "Invalid oauth_token"


async def test_token_in_url_is_refused(start: Start, http: aiohttp.ClientSession):
    server = await start()
    status, body = await call(
        http, "GET", api(server, "/logrequests"), headers={}, params={"oauth_token": TOKEN}
    )
    assert_error(status, body, 401, "unauthorized")


async def test_unknown_path_uses_envelope(start: Start, http: aiohttp.ClientSession):
    server = await start()
    status, body = await call(http, "GET", api(server, "/nothing-here"))
    assert_error(status, body, 404, "not_found")


# --- evaluate / create validation ----------------------------------------------------------------------


async def test_evaluate(start: Start, http: aiohttp.ClientSession):
    server = await start()
    status, body = await call(http, "GET", api(server, "/logrequests/evaluate"), params=params())
    assert status == 200
    evaluation = body["log_request_evaluation"]
    assert evaluation["possible"] is True
    assert evaluation["max_possible_day_quantity"] > 366


BAD_PARAMS = [
    ({"date2": TODAY.isoformat()}, "invalid_parameter"),
    ({"date1": TODAY.isoformat(), "date2": "2024-03-11"}, "invalid_parameter"),
    ({"date1": "2024-03-05", "date2": "2024-03-04"}, "invalid_parameter"),
    ({"date1": "09.03.2024"}, "invalid_parameter"),
    ({"date1": "2024-02-30"}, "invalid_parameter"),
    ({"date1": "2023-03-08"}, "invalid_parameter"),
    ({"fields": "ym:s:visitID," + ",".join(["ym:s:clientID"] * 220)}, "invalid_parameter"),
    ({"fields": "ym:s:visitID,ym:pv:URL"}, "invalid_parameter"),
    ({"fields": "ym:s:visitID,ym:s:noSuchField"}, "invalid_parameter"),
    ({"source": "hits"}, "invalid_parameter"),
    ({"source": "sessions"}, "invalid_parameter"),
    ({"attribution": "NOPE"}, "invalid_parameter"),
    ({"fields": ""}, "missing_parameter"),
    ({"date1": None}, "missing_parameter"),
    ({"source": None}, "missing_parameter"),
]


@pytest.mark.parametrize("method", ["GET /logrequests/evaluate", "POST /logrequests"])
@pytest.mark.parametrize(("change", "error_type"), BAD_PARAMS)
async def test_bad_parameters(
    start: Start, http: aiohttp.ClientSession, method: str, change: dict[str, str | None], error_type: str
):
    server = await start()
    query: dict[str, str] = params()
    for key, value in change.items():
        if value is None:
            query.pop(key)
        else:
            query[key] = value
    verb, path = method.split()
    status, body = await call(http, verb, api(server, path), params=query)
    assert_error(status, body, 400, error_type)
    assert not server.app[LOG_REQUESTS].requests


async def test_today_message_and_one_year_ok(start: Start, http: aiohttp.ClientSession):
    server = await start(visits_per_day=2)
    status, body = await call(http, "GET", api(server, "/logrequests/evaluate"), params=params(date2=TODAY))
    assert_error(status, body, 400, "invalid_parameter")
    assert "today" in body["message"]
    year = params(date1=date(2023, 3, 10), date2=DAY)  # 366 days (leap year)
    status, body = await call(http, "GET", api(server, "/logrequests/evaluate"), params=year)
    assert status == 200, body


# --- lifecycle -----------------------------------------------------------------------------------------


async def test_full_lifecycle(start: Start, http: aiohttp.ClientSession):
    server = await start(processing_seconds=0.2)
    created = await create(http, server)
    assert created["status"] == "created"
    assert created["counter_id"] == COUNTER
    assert created["source"] == "visits"
    assert created["date1"] == created["date2"] == DAY.isoformat()
    assert created["fields"] == FIELDS
    assert created["attribution"] == "LASTSIGN"
    assert "parts" not in created
    rid = created["request_id"]

    status, body = await call(http, "GET", api(server, f"/logrequest/{rid}/part/0/download"))
    assert_error(status, body, 400, "invalid_parameter", NOT_PROCESSED)

    done = await processed(http, server, rid)
    assert done["status"] == "processed"
    assert [p["part_number"] for p in done["parts"]] == [0]
    assert done["size"] == done["parts"][0]["size"] > 0

    status, listing = await call(http, "GET", api(server, "/logrequests"))
    assert status == 200
    assert [r["request_id"] for r in listing["requests"]] == [rid]

    async with http.get(api(server, f"/logrequest/{rid}/part/0/download"), headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        raw = await resp.read()
    frame = simulate_day(COUNTER, DAY, n_visits=300).visits
    assert raw.decode() == expected_tsv(frame, FIELDS)
    assert len(raw) == done["size"]

    for bad_part in ("1", "x"):
        status, body = await call(http, "GET", api(server, f"/logrequest/{rid}/part/{bad_part}/download"))
        assert_error(status, body, 400, "invalid_parameter", "Incorrect part number")

    status, body = await call(http, "POST", api(server, f"/logrequest/{rid}/cancel"))
    assert_error(status, body, 400, "invalid_parameter")

    status, body = await call(http, "POST", api(server, f"/logrequest/{rid}/clean"))
    assert status == 200
    assert body["log_request"]["status"] == "cleaned_by_user"
    assert "parts" not in body["log_request"]

    status, body = await call(http, "GET", api(server, f"/logrequest/{rid}/part/0/download"))
    assert_error(status, body, 400, "invalid_parameter", NOT_PROCESSED)
    status, body = await call(http, "POST", api(server, f"/logrequest/{rid}/clean"))
    assert_error(status, body, 400, "invalid_parameter")


async def test_cancel(start: Start, http: aiohttp.ClientSession):
    server = await start(processing_seconds=60)
    rid = (await create(http, server))["request_id"]
    status, body = await call(http, "POST", api(server, f"/logrequest/{rid}/clean"))
    assert_error(status, body, 400, "invalid_parameter")
    status, body = await call(http, "POST", api(server, f"/logrequest/{rid}/cancel"))
    assert status == 200
    assert body["log_request"]["status"] == "canceled"
    status, body = await call(http, "GET", api(server, f"/logrequest/{rid}"))
    assert body["log_request"]["status"] == "canceled"
    status, body = await call(http, "POST", api(server, f"/logrequest/{rid}/cancel"))
    assert_error(status, body, 400, "invalid_parameter")
    status, body = await call(http, "GET", api(server, f"/logrequest/{rid}/part/0/download"))
    assert_error(status, body, 400, "invalid_parameter", NOT_PROCESSED)


async def test_unknown_request_id(start: Start, http: aiohttp.ClientSession):
    server = await start()
    rid = (await create(http, server))["request_id"]
    for path in (
        f"/logrequest/{rid + 1}",
        f"/logrequest/{rid + 1}/clean",
        f"/logrequest/{rid + 1}/part/0/download",
    ):
        method = "POST" if path.endswith("clean") else "GET"
        status, body = await call(http, method, api(server, path))
        assert_error(status, body, 404, "not_found")
    status, body = await call(http, "GET", api(server, f"/logrequest/{rid}", counter=COUNTER + 1))
    assert_error(status, body, 404, "not_found")


async def test_parts_split_and_concatenate(start: Start, http: aiohttp.ClientSession):
    server = await start(rows_per_part=70, processing_seconds=0)
    rid = (await create(http, server, source="hits", fields=HIT_FIELDS[::-1]))["request_id"]
    done = await processed(http, server, rid)
    hits = simulate_day(COUNTER, DAY, n_visits=300).hits
    n_parts = -(-len(hits) // 70)
    assert [p["part_number"] for p in done["parts"]] == list(range(n_parts))
    header = "\t".join(HIT_FIELDS[::-1]) + "\n"
    rows: list[str] = []
    for part in done["parts"]:
        url = api(server, f"/logrequest/{rid}/part/{part['part_number']}/download")
        async with http.get(url, headers=AUTH) as resp:
            raw = await resp.read()
        assert len(raw) == part["size"]
        text = raw.decode()
        assert text.startswith(header)
        assert text.endswith("\n")
        rows.append(text[len(header) :])
    assert header + "".join(rows) == expected_tsv(hits, HIT_FIELDS[::-1])
    assert done["size"] == sum(p["size"] for p in done["parts"])


async def test_a_log_is_prepared_once_and_shared_by_its_requests(start: Start, http: aiohttp.ClientSession):
    """A re-run of a day meets its parts prepared: one rendering per log, which outlives a cleaned request
    while another still holds it; other fields are another log."""
    server = await start(rows_per_part=100, processing_seconds=0)
    store = server.app[LOG_REQUESTS]
    first, second = [(await create(http, server))["request_id"] for _ in range(2)]
    other = (await create(http, server, fields=FIELDS[:2]))["request_id"]
    parts = [(await processed(http, server, rid))["parts"] for rid in (first, second, other)]
    assert parts[0] == parts[1] != parts[2]
    assert store.requests[first].prepared is store.requests[second].prepared
    assert store.requests[other].prepared is not store.requests[first].prepared
    status, _ = await call(http, "POST", api(server, f"/logrequest/{first}/clean"))
    assert status == 200 and store.requests[first].prepared is None
    texts = []
    for part in parts[1]:
        async with http.get(
            api(server, f"/logrequest/{second}/part/{part['part_number']}/download"), headers=AUTH
        ) as r:
            texts.append(await r.text())
    header = "\t".join(FIELDS) + "\n"
    joined = header + "".join(t[len(header) :] for t in texts)
    assert joined == expected_tsv(simulate_day(COUNTER, DAY, n_visits=300).visits, FIELDS)


async def test_multi_day_request(start: Start, http: aiohttp.ClientSession):
    server = await start(visits_per_day=20, processing_seconds=0)
    rid = (await create(http, server, fields=["ym:s:visitID"], date1=date(2024, 3, 7)))["request_id"]
    await processed(http, server, rid)
    async with http.get(api(server, f"/logrequest/{rid}/part/0/download"), headers=AUTH) as resp:
        lines = (await resp.text()).splitlines()
    assert lines[0] == "ym:s:visitID"
    assert len(lines) == 1 + 3 * 20


async def test_empty_day_is_header_only(start: Start, http: aiohttp.ClientSession):
    server = await start(visits_per_day=0, processing_seconds=0)
    rid = (await create(http, server))["request_id"]
    done = await processed(http, server, rid)
    assert len(done["parts"]) == 1
    async with http.get(api(server, f"/logrequest/{rid}/part/0/download"), headers=AUTH) as resp:
        assert await resp.text() == "\t".join(FIELDS) + "\n"


async def test_tsv_escaping_arrays_and_big_ids(start: Start, http: aiohttp.ClientSession):
    server = await start(processing_seconds=0)
    big = str(2**64 - 1)
    visits = pd.DataFrame(
        {
            "ym:s:visitID": [big, str(2**63 + 5)],
            "ym:s:counterID": [COUNTER, COUNTER],
            "ym:s:watchIDs": [f"[1,2,{big}]", "[]"],
            "ym:s:dateTime": ["2024-03-09 14:03:59", "2024-03-09 00:00:00"],
            "ym:s:clientID": ["133591247640966458", big],
            "ym:s:visitDuration": [10, 0],
            "ym:s:pageViews": [2, 1],
            "ym:s:bounce": [0, 1],
            "ym:s:deviceCategory": ["1", "2"],
            "ym:s:isNewUser": [1, 0],
            "ym:s:startURL": ["https://x.ru/a\tb\nc\\d", "https://x.ru/q?x=\r"],
        },
        columns=VISIT_FIELDS,
    )
    hits = pd.DataFrame({name: pd.Series([], dtype=str) for name in HIT_FIELDS})
    server.app[DAYS].put(COUNTER, DAY, Day(visits=visits, hits=hits, level=np.zeros(2, dtype=np.int64)))
    fields = ["ym:s:startURL", "ym:s:watchIDs", "ym:s:visitID", "ym:s:bounce", "ym:s:dateTime"]
    rid = (await create(http, server, fields=fields))["request_id"]
    await processed(http, server, rid)
    async with http.get(api(server, f"/logrequest/{rid}/part/0/download"), headers=AUTH) as resp:
        body = await resp.read()
    assert body.decode() == (
        "ym:s:startURL\tym:s:watchIDs\tym:s:visitID\tym:s:bounce\tym:s:dateTime\n"
        f"https://x.ru/a\\tb\\nc\\\\d\t[1,2,{big}]\t{big}\t0\t2024-03-09 14:03:59\n"
        f"https://x.ru/q?x=\\r\t[]\t{2**63 + 5}\t1\t2024-03-09 00:00:00\n"
    )


# --- quotas --------------------------------------------------------------------------------------------


async def test_storage_quota(start: Start, http: aiohttp.ClientSession):
    probe = await start(processing_seconds=0)
    size = (await processed(http, probe, (await create(http, probe))["request_id"]))["size"]

    server = await start(processing_seconds=0, storage_limit_bytes=int(size * 1.5))
    rid = (await create(http, server))["request_id"]
    await processed(http, server, rid)
    status, body = await call(http, "GET", api(server, "/logrequests/evaluate"), params=params())
    assert body["log_request_evaluation"] == {"possible": False, "max_possible_day_quantity": 0}
    status, body = await call(http, "POST", api(server, "/logrequests"), params=params())
    assert_error(status, body, 400, "invalid_parameter")
    # another counter has its own 10 GB
    status, body = await call(http, "GET", api(server, "/logrequests/evaluate", COUNTER + 1), params=params())
    assert body["log_request_evaluation"]["possible"] is True

    await call(http, "POST", api(server, f"/logrequest/{rid}/clean"))
    status, body = await call(http, "GET", api(server, "/logrequests/evaluate"), params=params())
    assert body["log_request_evaluation"] == {"possible": True, "max_possible_day_quantity": 1}


async def test_parallel_quota(start: Start, http: aiohttp.ClientSession):
    server = await start(tokens=frozenset({TOKEN, "other-token"}))
    server.app[FAULTS].add(r"/logrequests$", None, times=None, delay=0.3)
    url = api(server, "/logrequests")
    results = await asyncio.gather(*(call(http, "GET", url) for _ in range(4)))
    assert sorted(status for status, _ in results) == [200, 200, 200, 429]
    status, body = next(r for r in results if r[0] == 429)
    assert_error(status, body, 429, "quota_parallel_requests")

    other = {"Authorization": "OAuth other-token"}
    results = await asyncio.gather(
        *(call(http, "GET", url) for _ in range(3)), call(http, "GET", url, headers=other)
    )
    assert [status for status, _ in results] == [200] * 4


async def test_rate_quota(start: Start, http: aiohttp.ClientSession):
    server = await start(rps=10)
    url = api(server, "/logrequests")
    started = time.monotonic()
    statuses = [(await call(http, "GET", url))[0] for _ in range(10)]
    status, body = await call(http, "GET", url)
    assert time.monotonic() - started < 1.0, "loopback too slow for this test"
    assert statuses == [200] * 10
    assert_error(status, body, 429, "quota_requests_by_ip")
    await asyncio.sleep(1.05)
    assert (await call(http, "GET", url))[0] == 200


# --- faults and the request log ------------------------------------------------------------------------


async def test_faults_in_python(start: Start, http: aiohttp.ClientSession):
    server = await start()
    server.app[FAULTS].add(r"/logrequests$", 503, times=2)
    url = api(server, "/logrequests")
    for _ in range(2):
        status, body = await call(http, "GET", url)
        assert_error(status, body, 503, "backend_error")
    assert (await call(http, "GET", url))[0] == 200


async def test_faults_over_http(start: Start, http: aiohttp.ClientSession):
    server = await start()
    control = str(server.make_url("/sandbox/faults"))
    async with http.post(control, json={"path": "evaluate", "status": 429, "times": 1}) as resp:
        assert resp.status == 201
    async with http.post(
        control, json={"path": "/logrequests$", "status": 500, "method": "POST", "times": None}
    ):
        pass
    async with http.get(control) as resp:
        listing = await resp.json()
    assert [f["path"] for f in listing["http"]] == ["evaluate", "/logrequests$"]

    status, body = await call(http, "GET", api(server, "/logrequests/evaluate"), params=params())
    assert_error(status, body, 429, "quota_requests_by_ip")
    assert (await call(http, "GET", api(server, "/logrequests/evaluate"), params=params()))[0] == 200
    for _ in range(3):
        status, body = await call(http, "POST", api(server, "/logrequests"), params=params())
        assert_error(status, body, 500, "backend_error")
    assert (await call(http, "GET", api(server, "/logrequests")))[0] == 200  # method filter

    async with http.delete(control) as resp:
        assert (await resp.json())["http"] == []
    assert (await call(http, "POST", api(server, "/logrequests"), params=params()))[0] == 200

    status, body = await call(http, "POST", control, headers={}, json={"path": "(", "status": 503})
    assert_error(status, body, 400, "invalid_parameter")
    status, body = await call(http, "POST", control, headers={}, data="not json")
    assert_error(status, body, 400, "invalid_json")


async def test_fault_delay_only(start: Start, http: aiohttp.ClientSession):
    server = await start(processing_seconds=0)
    rid = (await create(http, server))["request_id"]
    await processed(http, server, rid)
    server.app[FAULTS].add(r"/download$", None, delay=0.3)
    started = time.monotonic()
    status, body = await call(http, "GET", api(server, f"/logrequest/{rid}/part/0/download"))
    assert status == 200
    assert body.startswith("ym:s:visitID\t")
    assert time.monotonic() - started >= 0.3


async def test_processing_failed_fault(start: Start, http: aiohttp.ClientSession):
    server = await start(processing_seconds=0)
    async with http.post(str(server.make_url("/sandbox/faults")), json={"processing_failed": 1}) as resp:
        assert resp.status == 201
    failed = (await create(http, server))["request_id"]
    assert (await processed(http, server, failed))["status"] == "processing_failed"
    status, body = await call(http, "GET", api(server, f"/logrequest/{failed}/part/0/download"))
    assert_error(status, body, 400, "invalid_parameter", NOT_PROCESSED)
    ok = (await create(http, server))["request_id"]
    assert (await processed(http, server, ok))["status"] == "processed"


async def test_never_prepared_counter_fault(start: Start, http: aiohttp.ClientSession):
    server = await start(processing_seconds=0)
    control = str(server.make_url("/sandbox/faults"))
    async with http.post(control, json={"never_prepared": [COUNTER]}) as resp:
        assert resp.status == 201 and (await resp.json())["never_prepared"] == [COUNTER]
    stuck = (await create(http, server))["request_id"]
    other = (await create(http, server, counter=COUNTER + 1))["request_id"]
    assert (await processed(http, server, other, COUNTER + 1))["status"] == "processed"
    await asyncio.sleep(0.1)
    status, body = await call(http, "GET", api(server, f"/logrequest/{stuck}"))
    assert body["log_request"]["status"] == "created"
    async with http.delete(control):
        pass
    assert (await processed(http, server, stuck))["status"] == "processed"


async def test_request_log_counts_each_counter_s_requests_in_flight(
    start: Start, http: aiohttp.ClientSession
):
    server = await start()
    server.app[FAULTS].add(r"/logrequests$", None, times=None, delay=0.2)
    await asyncio.gather(*(call(http, "GET", api(server, "/logrequests", c)) for c in (1, 1, 2, 1)))
    async with http.get(str(server.make_url("/sandbox/requests"))) as resp:
        body = await resp.json()
    assert body["in_flight_max"] == {"1": 3, "2": 1} and body["in_flight"] == {}
    async with http.delete(str(server.make_url("/sandbox/requests"))) as resp:
        assert (await resp.json())["in_flight_max"] == {}


async def test_evaluation_override(start: Start, http: aiohttp.ClientSession):
    server = await start()
    fault = {"evaluation": {"possible": False, "max_possible_day_quantity": -6}, "times": 1}
    async with http.post(str(server.make_url("/sandbox/faults")), json=fault) as resp:
        assert resp.status == 201
    url = api(server, "/logrequests/evaluate")
    status, body = await call(http, "GET", url, params=params())
    assert body["log_request_evaluation"] == {"possible": False, "max_possible_day_quantity": -6}
    status, body = await call(http, "GET", url, params=params())
    assert body["log_request_evaluation"]["possible"] is True


async def test_request_log_never_holds_token(start: Start, http: aiohttp.ClientSession):
    server = await start()
    await call(http, "GET", api(server, "/logrequests"))
    await call(http, "GET", api(server, "/logrequests"), headers={"Authorization": "OAuth secret-bad"})
    await call(http, "GET", api(server, "/logrequests"), headers={}, params={"oauth_token": "secret-url"})
    async with http.get(str(server.make_url("/sandbox/requests"))) as resp:
        text = await resp.text()
    records = json.loads(text)["requests"]
    assert [(r["method"], r["status"]) for r in records] == [("GET", 200), ("GET", 403), ("GET", 401)]
    assert records[0]["path"] == f"/management/v1/counter/{COUNTER}/logrequests"
    for secret in (TOKEN, "secret-bad", "secret-url"):
        assert secret not in text
    assert len(server.app[REQUEST_LOG].find("GET", "/logrequests")) == 3
    async with http.delete(str(server.make_url("/sandbox/requests"))):
        pass
    assert server.app[REQUEST_LOG].records == []


def test_cli_args(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SANDBOX_PORT", "9123")
    args, config = parse_args(
        ["--token", "a", "--token", "b", "--processing-seconds", "0", "--today", "2024-03-10"]
    )
    assert (args.host, args.port) == ("127.0.0.1", 9123)
    assert config.tokens == frozenset({"a", "b"})
    assert config.processing_seconds == 0
    assert config.today == TODAY
    args, config = parse_args(["--port", "8090"])
    assert args.port == 8090
    assert config == SandboxConfig()
