"""The offline-conversions and goals emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sandbox.__main__ import parse_args
from sandbox.app import CONVERSIONS, DAYS, FAULTS, GOALS, REQUEST_LOG, UPLOADINGS, SandboxConfig
from sandbox.clock import MOSCOW
from sandbox.config import DEFAULT_GOALS
from sandbox.simulator import simulate_day
from tests.sandbox.helpers import AUTH, call
from tests.sandbox.helpers import assert_error as _assert_error

TODAY = date(2024, 3, 10)
DAY = date(2024, 3, 9)
COUNTER = 4242
OTHER_COUNTER = 5151
VISITS = 300
NO_OBJECT = "No object with specified ID."
HEADER = {"CLIENT_ID": "ClientId", "USER_ID": "UserId", "YCLID": "Yclid", "PURCHASE_ID": "PurchaseId"}

Start = Callable[..., Awaitable[TestServer]]


def ts(day: date = DAY, hour: int = 12) -> int:
    """Unix seconds of ``hour``:00 UTC on ``day``."""
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp())


def clients(day: date = DAY, counter: int = COUNTER, n: int = 3) -> list[str]:
    """ClientIds the sandbox simulates for ``counter`` on ``day``."""
    visits = simulate_day(counter, day, n_visits=VISITS).visits
    return list(dict.fromkeys(visits["ym:s:clientID"].tolist()))[:n]


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    return "\r\n".join([",".join(header)] + [",".join(str(v) for v in row) for row in rows]) + "\r\n"


@pytest.fixture
def start(start_sandbox: Start) -> Start:
    return functools.partial(
        start_sandbox,
        conversion_processing_seconds=0,
        visits_per_day=VISITS,
        today=TODAY,
        rps=0,
        management_rps=0,
    )


def assert_error(*args: Any, **kw: Any) -> None:
    _assert_error(*args, exact=False, **kw)


def api(server: TestServer, path: str, counter: int = COUNTER) -> str:
    return str(server.make_url(f"/management/v1/counter/{counter}{path}"))


def control(server: TestServer, path: str) -> str:
    return str(server.make_url(f"/sandbox/{path}"))


def form(data: str | bytes, name: str = "file") -> aiohttp.FormData:
    out = aiohttp.FormData()
    out.add_field(
        name, data.encode() if isinstance(data, str) else data, filename="data.csv", content_type="text/csv"
    )
    return out


async def upload(
    http: aiohttp.ClientSession,
    server: TestServer,
    data: str | bytes,
    client_id_type: str | None = "CLIENT_ID",
    *,
    counter: int = COUNTER,
    comment: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    params = {} if client_id_type is None else {"client_id_type": client_id_type}
    if comment is not None:
        params["comment"] = comment
    url = api(server, "/offline_conversions/upload", counter)
    return await call(http, "POST", url, params=params, data=form(data), headers=headers)


async def uploaded(http: aiohttp.ClientSession, server: TestServer, data: str, **kw: Any) -> dict[str, Any]:
    status, body = await upload(http, server, data, **kw)
    assert status == 200, body
    return dict(body["uploading"])


async def info(
    http: aiohttp.ClientSession, server: TestServer, uploading_id: int, counter: int = COUNTER
) -> dict[str, Any]:
    status, body = await call(
        http, "GET", api(server, f"/offline_conversions/uploading/{uploading_id}", counter)
    )
    assert status == 200, body
    return dict(body["uploading"])


async def final(http: aiohttp.ClientSession, server: TestServer, uploading_id: int) -> dict[str, Any]:
    for _ in range(300):
        body = await info(http, server, uploading_id)
        if body["status"] in ("PROCESSED", "LINKAGE_FAILURE"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError("uploading never reached a final status")


def counts(uploading: dict[str, Any]) -> tuple[int, int, int]:
    return (
        uploading["goal_not_found_quantity"],
        uploading["user_not_found_quantity"],
        uploading["linked_quantity"],
    )


# --- good uploads and linkage ---------------------------------------------------------------------------


@pytest.mark.parametrize("client_id_type", ["CLIENT_ID", "USER_ID", "YCLID", "PURCHASE_ID"])
async def test_good_upload_per_id_type(start: Start, http: aiohttp.ClientSession, client_id_type: str):
    server = await start()
    ids = clients() if client_id_type == "CLIENT_ID" else ["u-1", "u-2", "u-3"]
    rows = [[ids[0], "purchase", ts(), "123.45", "RUB"], [ids[1], "lead", ts(hour=13), "", ""]]
    rows.append([ids[2], "4plus", ts(hour=14), "0", "usd"])
    text = csv_text([HEADER[client_id_type], "Target", "DateTime", "Price", "Currency"], rows)
    body = await uploaded(http, server, text, client_id_type=client_id_type, comment="crm 1")
    assert set(body) == {
        "id",
        "create_time",
        "source_quantity",
        "line_quantity",
        "comment",
        "client_id_type",
        "status",
        "type",
        "goal_not_found_quantity",
        "user_not_found_quantity",
        "linked_quantity",
    }
    assert body["id"] >= 719_450_000
    assert (body["status"], body["type"], body["client_id_type"], body["comment"]) == (
        "UPLOADED",
        "BASIC",
        client_id_type,
        "crm 1",
    )
    assert (body["source_quantity"], body["line_quantity"]) == (3, 3)
    assert counts(body) == (0, 0, 0)
    created = datetime.strptime(body["create_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    expected = datetime.now(UTC) + (TODAY - datetime.now(MOSCOW).date())  # the sandbox's shifted clock
    assert abs((created - expected).total_seconds()) < 60

    done = await final(http, server, body["id"])
    assert done["status"] == "PROCESSED"
    assert counts(done) == (0, 0, 3)
    assert {k: v for k, v in done.items() if k not in ("status", "linked_quantity")} == {
        k: v for k, v in body.items() if k not in ("status", "linked_quantity")
    }


async def test_status_progression(start: Start, http: aiohttp.ClientSession):
    server = await start(conversion_processing_seconds=0.6)
    rows = [[client, "purchase", ts()] for client in clients()]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    seen = [body["status"]]
    started = time.monotonic()
    while seen[-1] not in ("PROCESSED", "LINKAGE_FAILURE"):
        current = await info(http, server, body["id"])
        if current["status"] != "PROCESSED":
            assert counts(current) == (0, 0, 0)
        if current["status"] != seen[-1]:
            seen.append(current["status"])
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.5
    assert seen == ["UPLOADED", "EXPORTED", "MATCHED", "PROCESSED"]
    assert counts(await info(http, server, body["id"])) == (0, 0, 3)


async def test_counts_goal_user_and_age(start: Start, http: aiohttp.ClientSession):
    server = await start()
    known = clients()
    async with http.post(control(server, "clients"), json={"counter": COUNTER, "client_ids": ["42"]}) as resp:
        assert resp.status == 201
    rows = [
        [known[0], "purchase", ts()],
        [known[1], "order_confirmed", ts(hour=1)],
        ["42", "lead", ts(DAY - timedelta(days=19))],  # registered: links whatever the day
        ["999", "purchase", ts()],  # unknown visitor
        [known[2], "no_such_goal", ts()],  # goal not found
        ["42", "purchase", ts(DAY - timedelta(days=23))],  # older than 21 days before processing
        ["", "purchase", ts()],  # empty identifier: not a valid line
        [known[0], "", ts()],  # empty Target: not a valid line
    ]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    assert (body["source_quantity"], body["line_quantity"]) == (8, 6)
    done = await final(http, server, body["id"])
    assert done["status"] == "PROCESSED"
    assert counts(done) == (1, 2, 3)


async def test_linkage_failure_for_unknown_clients(start: Start, http: aiohttp.ClientSession):
    server = await start()
    rows = [["1111", "purchase", ts()], ["2222", "lead", ts()]]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    done = await final(http, server, body["id"])
    assert done["status"] == "LINKAGE_FAILURE"
    assert counts(done) == (0, 2, 0)
    # another counter's visitors do not link either
    rows = [[client, "purchase", ts()] for client in clients(counter=OTHER_COUNTER)]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    assert counts(await final(http, server, body["id"])) == (0, 3, 0)


async def test_only_goal_not_found_is_linkage_failure(start: Start, http: aiohttp.ClientSession):
    server = await start()
    rows = [[client, "not_a_goal", ts()] for client in clients()]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    done = await final(http, server, body["id"])
    assert (done["status"], counts(done)) == ("LINKAGE_FAILURE", (3, 0, 0))


async def test_earlier_generated_days_link(start: Start, http: aiohttp.ClientSession):
    server = await start()
    earlier = DAY - timedelta(days=5)
    rows = [[client, "purchase", ts()] for client in clients(earlier)]
    text = csv_text(["ClientId", "Target", "DateTime"], rows)
    body = await uploaded(http, server, text)
    assert counts(await final(http, server, body["id"])) == (0, 3, 0)  # that day was never generated

    await server.app[DAYS].day(COUNTER, earlier)  # e.g. a Logs API export of that day
    body = await uploaded(http, server, text)
    assert counts(await final(http, server, body["id"])) == (0, 0, 3)

    far = DAY - timedelta(days=22)
    await server.app[DAYS].day(COUNTER, far)
    rows = [[client, "purchase", ts()] for client in clients(far)]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    assert counts(await final(http, server, body["id"])) == (0, 3, 0)  # outside the 21-day window


async def test_registered_and_unknown_visitors(start: Start, http: aiohttp.ClientSession):
    server = await start(unknown_visitor_ids=frozenset({"bad-user"}))
    url = control(server, "clients")
    async with http.post(url, json={"counter": COUNTER, "client_ids": ["777", "888"]}) as resp:
        assert resp.status == 201
    async with http.post(url, json={"unknown_ids": ["bad-yclid"]}) as resp:
        assert resp.status == 201
    async with http.get(url, params={"counter": str(COUNTER)}) as resp:
        listing = await resp.json()
    assert listing == {"registered": {str(COUNTER): ["777", "888"]}, "unknown_ids": ["bad-user", "bad-yclid"]}

    rows = [["777", "purchase", ts()], ["888", "lead", ts()]]
    body = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    assert counts(await final(http, server, body["id"])) == (0, 0, 2)
    body = await uploaded(
        http, server, csv_text(["ClientId", "Target", "DateTime"], rows), counter=OTHER_COUNTER
    )
    status, body = await call(
        http, "GET", api(server, f"/offline_conversions/uploading/{body['id']}", OTHER_COUNTER)
    )
    assert counts(body["uploading"]) == (0, 2, 0)

    rows = [["bad-user", "purchase", ts()], ["good-user", "purchase", ts()]]
    body = await uploaded(
        http, server, csv_text(["UserId", "Target", "DateTime"], rows), client_id_type="USER_ID"
    )
    assert counts(await final(http, server, body["id"])) == (0, 1, 1)
    rows = [["bad-yclid", "purchase", ts()]]
    body = await uploaded(
        http, server, csv_text(["Yclid", "Target", "DateTime"], rows), client_id_type="YCLID"
    )
    assert (await final(http, server, body["id"]))["status"] == "LINKAGE_FAILURE"
    # PurchaseId links like UserId: any non-empty value unless it is listed as unknown
    rows = [["bad-user", "purchase", ts()], ["order-1", "purchase", ts()], ["", "purchase", ts()]]
    body = await uploaded(
        http, server, csv_text(["PurchaseId", "Target", "DateTime"], rows), client_id_type="purchase_id"
    )
    assert (body["source_quantity"], body["line_quantity"], body["client_id_type"]) == (3, 2, "PURCHASE_ID")
    assert counts(await final(http, server, body["id"])) == (0, 1, 1)

    async with http.delete(url) as resp:
        assert await resp.json() == {"registered": {}, "unknown_ids": ["bad-user"]}
    for bad in ({"client_ids": ["1"]}, {"counter": COUNTER, "client_ids": "1"}, {}):
        status, body = await call(http, "POST", url, headers={}, json=bad)
        assert status == 400, bad


async def test_linkage_failure_fault(start: Start, http: aiohttp.ClientSession):
    server = await start()
    text = csv_text(["ClientId", "Target", "DateTime"], [[c, "purchase", ts()] for c in clients()])
    server.app[FAULTS].fail_linkage()
    forced = await uploaded(http, server, text)
    async with http.post(control(server, "faults"), json={"linkage_failure": 1}) as resp:
        assert resp.status == 201
        assert (await resp.json())["linkage_failure"] == 1
    forced_http = await uploaded(http, server, text)
    ok = await uploaded(http, server, text)
    for uploading in (forced, forced_http):
        done = await final(http, server, uploading["id"])
        assert (done["status"], counts(done)) == ("LINKAGE_FAILURE", (0, 3, 0))
    assert counts(await final(http, server, ok["id"])) == (0, 0, 3)


async def test_csv_dialect(start: Start, http: aiohttp.ClientSession):
    """BOM, any header case, extra spaces, LF or CRLF, blank lines, RFC 4180 quoting."""
    server = await start()
    known = clients()
    text = (
        "\ufeffclientid, target ,DATETIME,Price,Currency\n"
        f'"{known[0]}","purchase",{ts()},"1.50",RUB\n'
        "\n"
        f'{known[1]},purchase,{ts()},"2",EUR\r\n'
    )
    body = await uploaded(http, server, text)
    assert (body["source_quantity"], body["line_quantity"]) == (2, 2)
    assert counts(await final(http, server, body["id"])) == (0, 0, 2)
    rows = server.app[CONVERSIONS].rows_for(COUNTER)
    assert rows[0] == {
        "clientid": known[0],
        "target": "purchase",
        "DATETIME": str(ts()),
        "Price": "1.50",
        "Currency": "RUB",
    }
    assert [line.line for line in server.app[CONVERSIONS].lines] == [2, 4]


# --- whole-file errors ----------------------------------------------------------------------------------

GOOD_ROW = f"123,purchase,{ts()}"
FUTURE = int(time.time()) + 10 * 86400  # 2026+ is always after the sandbox's 2024-03-10


@pytest.mark.parametrize(
    ("client_id_type", "text", "error_type", "message"),
    [
        ("CLIENT_ID", "", "invalid_uploading", "empty"),
        ("CLIENT_ID", " \r\n\r\n", "invalid_uploading", "empty"),
        ("CLIENT_ID", "ClientId,Target,DateTime\r\n", "invalid_uploading", "no data lines"),
        (
            "CLIENT_ID",
            f"UserId,Target,DateTime\n{GOOD_ROW}\n",
            "invalid_uploading",
            "needs an 'ClientId' column",
        ),
        (
            "USER_ID",
            f"ClientId,Target,DateTime\n{GOOD_ROW}\n",
            "invalid_uploading",
            "needs an 'UserId' column",
        ),
        ("CLIENT_ID", f"ClientId,UserId,Target,DateTime\n1,{GOOD_ROW}\n", "invalid_uploading", "mixes"),
        ("CLIENT_ID", f"Target,DateTime\npurchase,{ts()}\n", "invalid_uploading", "no identifier column"),
        ("CLIENT_ID", f"ClientId,DateTime\n1,{ts()}\n", "invalid_uploading", "'Target' is missing"),
        ("CLIENT_ID", "ClientId,Target\n1,purchase\n", "invalid_uploading", "'DateTime' is missing"),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime,Extra\n{GOOD_ROW},x\n",
            "invalid_uploading",
            "unknown column",
        ),
        ("CLIENT_ID", f"ClientId,Target,DateTime,\n{GOOD_ROW},\n", "invalid_uploading", "has no name"),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime,Target\n{GOOD_ROW},x\n",
            "invalid_uploading",
            "more than once",
        ),
        (
            "CLIENT_ID",
            f"ClientId;Target;DateTime\n123;purchase;{ts()}\n",
            "invalid_uploading",
            "unknown column",
        ),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime\n{GOOD_ROW}\n1,purchase,2024-03-09\n",
            "invalid_uploading",
            "Line 3",
        ),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime\n1,purchase,{ts() * 1000}\n",
            "invalid_uploading",
            "Unix timestamp",
        ),
        ("CLIENT_ID", "ClientId,Target,DateTime\n1,purchase,\n", "invalid_uploading", "Unix timestamp"),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime\n{GOOD_ROW}\n1,purchase,{FUTURE}\n",
            "invalid_uploading",
            "Line 3",
        ),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime,Currency\n{GOOD_ROW},RUBL\n",
            "invalid_uploading",
            "Currency",
        ),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime,Currency\n{GOOD_ROW},R1B\n",
            "invalid_uploading",
            "Currency",
        ),
        ("CLIENT_ID", f"ClientId,Target,DateTime,Price\n{GOOD_ROW},-1\n", "invalid_uploading", "negative"),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime,Price\n{GOOD_ROW},abc\n",
            "invalid_uploading",
            "not a number",
        ),
        (
            "CLIENT_ID",
            f'ClientId,Target,DateTime,Price\n{GOOD_ROW},"1,5"\n',
            "invalid_uploading",
            "not a number",
        ),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime,Price\n{GOOD_ROW},NaN\n",
            "invalid_uploading",
            "not a number",
        ),
        (
            "CLIENT_ID",
            f"ClientId,Target,DateTime\n{GOOD_ROW},extra\n",
            "invalid_uploading",
            "Line 2: 4 fields",
        ),
        (
            "CLIENT_ID",
            f'ClientId,Target,DateTime\n"12"3,purchase,{ts()}\n',
            "invalid_uploading",
            "malformed CSV",
        ),
        ("CLIENT_ID", b"ClientId,Target,DateTime\n\xff\xfe,purchase,1\n", "invalid_uploading", "UTF-8"),
        (None, f"ClientId,Target,DateTime\n{GOOD_ROW}\n", "missing_parameter", "client_id_type"),
        ("EMAIL", f"ClientId,Target,DateTime\n{GOOD_ROW}\n", "invalid_parameter", "client_id_type"),
        (
            "PURCHASE_ID",
            f"ClientId,Target,DateTime\n{GOOD_ROW}\n",
            "invalid_uploading",
            "needs an 'PurchaseId' column",
        ),
        ("CLIENT_ID", f"ClientId,PurchaseId,Target,DateTime\n1,{GOOD_ROW}\n", "invalid_uploading", "mixes"),
    ],
)
async def test_whole_file_errors(
    start: Start,
    http: aiohttp.ClientSession,
    client_id_type: str | None,
    text: str | bytes,
    error_type: str,
    message: str,
):
    server = await start()
    status, body = await upload(http, server, text, client_id_type)
    assert_error(status, body, 400, error_type, message)
    assert server.app[CONVERSIONS].lines == []
    assert server.app[UPLOADINGS].uploadings == {}


async def test_future_date_names_line(start: Start, http: aiohttp.ClientSession):
    server = await start()
    text = f"ClientId,Target,DateTime\n{GOOD_ROW}\n{GOOD_ROW}\n1,purchase,{FUTURE}\n"
    status, body = await upload(http, server, text)
    assert_error(status, body, 400, "invalid_uploading", f"Line 4: DateTime {FUTURE} is in the future")


async def test_request_level_errors(start: Start, http: aiohttp.ClientSession):
    server = await start(max_upload_bytes=1000)
    text = f"ClientId,Target,DateTime\n{GOOD_ROW}\n"
    url = api(server, "/offline_conversions/upload")
    query = {"client_id_type": "CLIENT_ID"}

    other_part = aiohttp.FormData()
    other_part.add_field("data", text.encode(), filename="data.csv", content_type="text/csv")
    status, body = await call(http, "POST", url, params=query, data=other_part)
    assert_error(status, body, 400, "missing_parameter", "'file' is missing")

    status, body = await call(http, "POST", url, params=query, data=text)
    assert_error(status, body, 400, "missing_parameter", "multipart/form-data")

    status, body = await upload(http, server, text, comment="x" * 256)
    assert_error(status, body, 400, "invalid_parameter", "comment")
    assert (await upload(http, server, text, comment="x" * 255))[0] == 200

    big = "ClientId,Target,DateTime\n" + f"{GOOD_ROW}\n" * 60
    status, body = await upload(http, server, big)
    assert_error(status, body, 400, "invalid_uploading", "larger than 1 GB")

    status, body = await call(http, "POST", url, params={**query, "type": "CALLS"}, data=form(text))
    assert_error(status, body, 400, "invalid_parameter", "BASIC")
    assert len(server.app[CONVERSIONS].lines) == 1


async def test_a_broken_multipart_body_is_400_like_yandex(start: Start, http: aiohttp.ClientSession):
    server = await start()
    url = api(server, "/offline_conversions/upload")
    part = b'--abc\r\nContent-Disposition: form-data; name="file"\r\n'
    for body in (
        part + b"Bad Header\r\n\r\nx\r\n--abc--\r\n",  # a part header line without a colon
        b"--abc\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nbad\r\n--abc--\r\n",
        b"no boundary anywhere",
    ):
        status, payload = await call(
            http,
            "POST",
            url,
            params={"client_id_type": "CLIENT_ID"},
            data=body,
            headers={**AUTH, "Content-Type": "multipart/form-data; boundary=abc"},
        )
        assert_error(status, payload, 400, "invalid_parameter", "Malformed multipart body")
    assert server.app[CONVERSIONS].lines == []


# --- uploading lookups ----------------------------------------------------------------------------------


async def test_unknown_uploading_id(start: Start, http: aiohttp.ClientSession):
    server = await start()
    body = await uploaded(http, server, f"ClientId,Target,DateTime\n{GOOD_ROW}\n")
    for path, counter in (
        ("/offline_conversions/uploading/1", COUNTER),
        (f"/offline_conversions/uploading/{body['id'] + 1}", COUNTER),
        (f"/offline_conversions/uploading/{body['id']}", OTHER_COUNTER),
    ):
        status, error = await call(http, "GET", api(server, path, counter))
        assert status == 400
        assert error == {
            "errors": [{"error_type": "invalid_parameter", "message": NO_OBJECT}],
            "code": 400,
            "message": NO_OBJECT,
        }
    status, error = await call(http, "GET", api(server, "/offline_conversions/uploading/abc"))
    assert_error(status, error, 400, "invalid_parameter")


async def test_uploadings_list(start: Start, http: aiohttp.ClientSession):
    server = await start()
    text = f"ClientId,Target,DateTime\n{GOOD_ROW}\n"
    ids = [(await uploaded(http, server, text, comment=f"c{n}"))["id"] for n in range(3)]
    other = await uploaded(http, server, text, counter=OTHER_COUNTER)
    assert ids == sorted(ids) and len(set(ids)) == 3 and other["id"] > ids[-1]

    url = api(server, "/offline_conversions/uploadings")
    status, body = await call(http, "GET", url)
    assert status == 200
    assert [u["id"] for u in body["uploadings"]] == ids
    assert [u["comment"] for u in body["uploadings"]] == ["c0", "c1", "c2"]
    assert {u["status"] for u in body["uploadings"]} == {
        "LINKAGE_FAILURE"
    }  # processed at once, "123" unknown
    status, body = await call(http, "GET", url, params={"limit": "1", "offset": "1"})
    assert [u["id"] for u in body["uploadings"]] == ids[1:2]
    status, body = await call(http, "GET", api(server, "/offline_conversions/uploadings", 9999))
    assert body == {"uploadings": []}
    for bad in ({"limit": "0"}, {"limit": "x"}, {"offset": "-1"}):
        status, body = await call(http, "GET", url, params=bad)
        assert_error(status, body, 400, "invalid_parameter")


# --- goals ----------------------------------------------------------------------------------------------


async def test_goals_list_and_add(start: Start, http: aiohttp.ClientSession):
    server = await start()
    url = api(server, "/goals")
    status, body = await call(http, "GET", url)
    assert status == 200
    goals = body["goals"]
    assert [g["conditions"] for g in goals] == [[{"type": "exact", "url": name}] for name in DEFAULT_GOALS]
    assert {g["type"] for g in goals} == {"action"}
    for key in ("id", "name", "type", "default_price", "is_favorite", "status", "conditions", "goal_source"):
        assert key in goals[0]
    assert len({g["id"] for g in goals}) == len(goals)

    new = {"goal": {"name": "Order paid", "type": "action", "conditions": [{"type": "exact", "url": "paid"}]}}
    status, body = await call(http, "POST", url, json=new)
    assert status == 200, body
    goal = body["goal"]
    assert (goal["name"], goal["type"], goal["conditions"]) == (
        "Order paid",
        "action",
        [{"type": "exact", "url": "paid"}],
    )
    status, body = await call(http, "GET", url)
    assert body["goals"][-1] == goal
    status, body = await call(http, "GET", api(server, "/goals", OTHER_COUNTER))
    assert len(body["goals"]) == len(DEFAULT_GOALS)
    assert "paid" in server.app[GOALS].targets(COUNTER)

    known = clients()
    rows = [[known[0], "paid", ts()], [known[1], "Order paid", ts()]]
    uploading = await uploaded(http, server, csv_text(["ClientId", "Target", "DateTime"], rows))
    assert counts(await final(http, server, uploading["id"])) == (1, 0, 1)

    for bad, error_type in (
        ({"name": "x"}, "invalid_parameter"),
        ({"goal": {"type": "action", "conditions": [{"type": "exact", "url": "a"}]}}, "missing_parameter"),
        ({"goal": {"name": "x", "type": "nonsense"}}, "invalid_parameter"),
        ({"goal": {"name": "x", "type": "action"}}, "invalid_parameter"),
        (
            {"goal": {"name": "x", "type": "action", "conditions": [{"type": "weird", "url": "a"}]}},
            "invalid_parameter",
        ),
        ({"goal": {"name": "x" * 256, "type": "number", "depth": 3}}, "invalid_parameter"),
    ):
        status, body = await call(http, "POST", url, json=bad)
        assert_error(status, body, 400, error_type)
    status, body = await call(
        http, "POST", url, data="{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_error(status, body, 400, "invalid_json")


async def test_custom_default_goals(start: Start, http: aiohttp.ClientSession):
    server = await start(default_goals=("only_this",))
    status, body = await call(http, "GET", api(server, "/goals"))
    assert [g["conditions"][0]["url"] for g in body["goals"]] == ["only_this"]


# --- auth, quotas, faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code", "error_type"),
    [({}, 401, "unauthorized"), ({"Authorization": "OAuth wrong-token"}, 403, "invalid_token")],
)
async def test_auth(
    start: Start, http: aiohttp.ClientSession, headers: dict[str, str], code: int, error_type: str
):
    server = await start()
    text = f"ClientId,Target,DateTime\n{GOOD_ROW}\n"
    status, body = await upload(http, server, text, headers=headers)
    assert_error(status, body, code, error_type)
    for method, path in (
        ("GET", "/offline_conversions/uploading/719450000"),
        ("GET", "/offline_conversions/uploadings"),
        ("GET", "/goals"),
        ("POST", "/goals"),
    ):
        status, body = await call(http, method, api(server, path), headers=headers)
        assert_error(status, body, code, error_type)
    assert server.app[CONVERSIONS].lines == []


async def test_fault_then_success_records_once(start: Start, http: aiohttp.ClientSession):
    server = await start()
    server.app[FAULTS].add(r"/offline_conversions/upload$", 503, times=2)
    async with http.post(
        control(server, "faults"), json={"path": "/offline_conversions/upload$", "status": 429, "times": 1}
    ) as resp:
        assert resp.status == 201
    text = csv_text(["ClientId", "Target", "DateTime"], [[c, "purchase", ts()] for c in clients()])
    results = [await upload(http, server, text) for _ in range(4)]
    assert_error(*results[0], 503, "backend_error")
    assert_error(*results[1], 503, "backend_error")
    assert_error(*results[2], 429, "quota_requests_by_ip")
    assert results[3][0] == 200
    assert len(server.app[CONVERSIONS].lines) == 3
    statuses = [r.status for r in server.app[REQUEST_LOG].find("POST", "/offline_conversions/upload")]
    assert statuses == [503, 503, 429, 200]
    assert server.app[REQUEST_LOG].records[-1].query == {"client_id_type": "CLIENT_ID"}


async def test_management_rate_quota(start: Start, http: aiohttp.ClientSession):
    server = await start(management_rps=30, rps=10)
    url = api(server, "/goals")
    started = time.monotonic()
    statuses = [(await call(http, "GET", url))[0] for _ in range(30)]
    status, body = await call(http, "GET", url)
    assert time.monotonic() - started < 1.0, "loopback too slow for this test"
    assert statuses == [200] * 30
    assert_error(status, body, 429, "quota_requests_by_ip", "30 requests per second")
    # the Logs API has its own bucket
    assert (await call(http, "GET", api(server, "/logrequests")))[0] == 200
    await asyncio.sleep(1.05)
    assert (await call(http, "GET", url))[0] == 200


async def test_parallel_quota(start: Start, http: aiohttp.ClientSession):
    server = await start()
    server.app[FAULTS].add(r"/goals$", None, times=None, delay=0.3)
    results = await asyncio.gather(*(call(http, "GET", api(server, "/goals")) for _ in range(4)))
    assert sorted(status for status, _ in results) == [200, 200, 200, 429]
    assert_error(*next(r for r in results if r[0] == 429), 429, "quota_parallel_requests")


# --- the record of received lines -----------------------------------------------------------------------


async def test_recorded_lines(start: Start, http: aiohttp.ClientSession):
    server = await start()
    text = (
        "UserId,Target,DateTime,Price,Currency\n"
        f'"a,""b""",purchase,{ts()},10.5,RUB\n'
        f'"multi\nline",lead,{ts()},,\n'
        f",purchase,{ts()},,\n"
    )
    first = await uploaded(http, server, text, client_id_type="USER_ID")
    second = await uploaded(http, server, f"ClientId,Target,DateTime\n{GOOD_ROW}\n", counter=OTHER_COUNTER)
    sent = [
        {"UserId": 'a,"b"', "Target": "purchase", "DateTime": str(ts()), "Price": "10.5", "Currency": "RUB"},
        {"UserId": "multi\nline", "Target": "lead", "DateTime": str(ts()), "Price": "", "Currency": ""},
        {"UserId": "", "Target": "purchase", "DateTime": str(ts()), "Price": "", "Currency": ""},
    ]
    log = server.app[CONVERSIONS]
    assert log.rows_for(COUNTER) == sent
    lines = log.lines_for(COUNTER)
    assert [(ln.upload_id, ln.client_id_type, ln.counter) for ln in lines] == [
        (first["id"], "USER_ID", COUNTER)
    ] * 3
    assert [(ln.line, ln.valid) for ln in lines] == [(2, True), (3, True), (5, False)]
    assert (first["source_quantity"], first["line_quantity"]) == (3, 2)

    async with http.get(control(server, "conversions")) as resp:
        everything = (await resp.json())["lines"]
    assert [line["upload_id"] for line in everything] == [first["id"]] * 3 + [second["id"]]
    async with http.get(control(server, "conversions"), params={"counter": str(OTHER_COUNTER)}) as resp:
        only = (await resp.json())["lines"]
    assert only == [
        {
            "counter": OTHER_COUNTER,
            "upload_id": second["id"],
            "client_id_type": "CLIENT_ID",
            "row": {"ClientId": "123", "Target": "purchase", "DateTime": str(ts())},
            "line": 2,
            "valid": True,
            "received": only[0]["received"],
        }
    ]
    assert datetime.fromtimestamp(only[0]["received"], MOSCOW).date() == TODAY  # "today" is a Moscow date
    async with http.delete(control(server, "conversions")) as resp:
        assert await resp.json() == {"lines": []}
    assert log.lines == []
    async with http.get(control(server, "conversions"), params={"counter": "x"}) as resp:
        assert resp.status == 400


def test_cli_args():
    args, config = parse_args(
        [
            "--conversion-processing-seconds",
            "0",
            "--management-rps",
            "5",
            "--goal",
            "a",
            "--goal",
            "b",
            "--unknown-visitor-id",
            "u1",
            "--max-upload-bytes",
            "100",
        ]
    )
    assert config.conversion_processing_seconds == 0
    assert config.management_rps == 5
    assert config.default_goals == ("a", "b")
    assert config.unknown_visitor_ids == frozenset({"u1"})
    assert config.max_upload_bytes == 100
    assert parse_args([])[1] == SandboxConfig()
