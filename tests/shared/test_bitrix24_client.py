"""Bitrix24Client against the sandbox's Bitrix24 emulator on loopback: reads, final and passing errors,
pacing to the portal's limit, and the webhook code kept out of every log line and message."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sandbox.app import BITRIX, FAULTS, REQUEST_LOG
from shared.bitrix24 import Bitrix24Client, Bitrix24Error, PortalPacer

Start = Callable[..., Awaitable[TestServer]]
CODE = "s3cr3twebhookcode"


async def portal(start_sandbox: Start, **config: object) -> TestServer:
    server = await start_sandbox(bitrix_webhook_codes=frozenset({CODE}), **config)
    server.app[BITRIX].put_deals(
        CODE,
        [
            {
                "ID": 759,
                "TITLE": "Order 42",
                "STAGE_ID": "WON",
                "OPPORTUNITY": 15000,
                "UF_CRM_YM_CLIENT": "17.42",
            }
        ],
    )
    server.app[BITRIX].put_leads(CODE, [{"ID": 31, "STATUS_ID": "CONVERTED", "OPPORTUNITY": 99.5}])
    return server


def client(server: TestServer, http: aiohttp.ClientSession, code: str = CODE, **kw: float) -> Bitrix24Client:
    options: dict[str, float] = {"rps": 0, "attempts": 5, "backoff_max_s": 0.05, "timeout_s": 5.0, **kw}
    return Bitrix24Client(
        http,
        str(server.make_url(f"/rest/1/{code}/")),
        rps=options["rps"],
        attempts=int(options["attempts"]),
        backoff_max_s=options["backoff_max_s"],
        timeout_s=options["timeout_s"],
    )


def calls(server: TestServer) -> list[int]:
    """The statuses of the REST calls the portal received, in order."""
    return [r.status for r in server.app[REQUEST_LOG].records if r.path.startswith("/rest/")]


async def test_a_deal_and_a_lead_are_fetched(start_sandbox: Start, http: aiohttp.ClientSession) -> None:
    server = await portal(start_sandbox)
    bitrix = client(server, http)
    deal = await bitrix.deal(759)
    assert deal["ID"] == "759" and deal["STAGE_ID"] == "WON" and deal["OPPORTUNITY"] == "15000.00"
    assert deal["CURRENCY_ID"] == "RUB" and deal["UF_CRM_YM_CLIENT"] == "17.42" and "DATE_MODIFY" in deal
    lead = await bitrix.lead("31")
    assert lead["STATUS_ID"] == "CONVERTED" and lead["OPPORTUNITY"] == "99.50"
    assert [r.path for r in server.app[REQUEST_LOG].records] == [
        "/rest/1/***/crm.deal.get.json",
        "/rest/1/***/crm.lead.get.json",
    ]


async def test_not_found_and_other_4xx_are_final(start_sandbox: Start, http: aiohttp.ClientSession) -> None:
    server = await portal(start_sandbox)
    with pytest.raises(Bitrix24Error) as missing:
        await client(server, http).deal(1)
    error = missing.value
    assert (error.status, error.error, error.description) == (400, "", "Not found")
    assert error.not_found and not error.retryable and error.attempts == 1
    assert calls(server) == [400]

    with pytest.raises(Bitrix24Error) as refused:
        await client(server, http, code="wrongcode").lead(31)
    assert (refused.value.status, refused.value.error) == (401, "INVALID_CREDENTIALS")
    assert not refused.value.retryable and not refused.value.not_found
    assert calls(server) == [400, 401]

    with pytest.raises(ValueError):
        await client(server, http).deal("0")
    assert calls(server) == [400, 401]


async def test_query_limit_exceeded_is_retried_until_it_passes(
    start_sandbox: Start, http: aiohttp.ClientSession
) -> None:
    server = await portal(start_sandbox)
    server.app[FAULTS].add(r"crm\.deal\.get", 503, times=2)  # QUERY_LIMIT_EXCEEDED in the emulator
    assert (await client(server, http).deal(759))["ID"] == "759"
    assert calls(server) == [503, 503, 200]


async def test_5xx_is_retried_and_gives_up_after_its_attempts(
    start_sandbox: Start, http: aiohttp.ClientSession
) -> None:
    server = await portal(start_sandbox)
    server.app[FAULTS].add(r"crm\.lead\.get", 500, times=2)
    assert (await client(server, http).lead(31))["ID"] == "31"
    assert calls(server) == [500, 500, 200]

    server.app[FAULTS].add(r"crm\.lead\.get", 502, times=None)
    with pytest.raises(Bitrix24Error) as failed:
        await client(server, http, attempts=3).lead(31)
    assert failed.value.status == 502 and failed.value.retryable and failed.value.attempts == 3
    assert "gave up after 3 attempts" in str(failed.value)
    assert calls(server) == [500, 500, 200, 502, 502, 502]


async def test_a_timeout_is_retried(start_sandbox: Start, http: aiohttp.ClientSession) -> None:
    server = await portal(start_sandbox)
    server.app[FAULTS].add(r"crm\.deal\.get", None, times=1, delay=1.0)
    assert (await client(server, http, timeout_s=0.3).deal(759))["ID"] == "759"


async def test_the_client_paces_itself_to_the_portals_limit(
    start_sandbox: Start, http: aiohttp.ClientSession
) -> None:
    """The portal allows a burst of 10 and 20 requests/s. Unpaced, 30 calls at once are refused and only
    get through by retrying; paced at the portal's rate, the same 30 calls are never refused (the burst
    absorbs an event-loop stall of up to half a second)."""
    server = await portal(start_sandbox, bitrix_rps=20, bitrix_burst=10)
    host = f"127.0.0.1:{server.port}"
    limit = server.app[BITRIX].limit

    hammering = client(server, http, rps=0, attempts=50, backoff_max_s=0.2)
    results = await asyncio.gather(*(hammering.deal(759) for _ in range(30)))
    assert all(r["ID"] == "759" for r in results)
    assert limit.accepted[host] == 30 and limit.refused[host] >= 15

    limit.clear()
    server.app[REQUEST_LOG].clear()
    await asyncio.sleep(0.6)  # the portal's bucket drains
    paced = client(server, http, rps=20)
    results = await asyncio.gather(*(paced.deal(759) for _ in range(30)))
    assert all(r["ID"] == "759" for r in results)
    assert (limit.accepted[host], limit.refused[host]) == (30, 0)
    assert calls(server) == [200] * 30


async def test_a_bucket_used_up_by_someone_else_is_waited_out(
    start_sandbox: Start, http: aiohttp.ClientSession
) -> None:
    server = await portal(start_sandbox, bitrix_rps=10, bitrix_burst=5)
    host = f"127.0.0.1:{server.port}"
    server.app[BITRIX].limit.fill(host, "127.0.0.1", 5)  # another integration used the burst up
    assert (await client(server, http, rps=10, attempts=20, backoff_max_s=0.3).deal(759))["ID"] == "759"
    refused = server.app[BITRIX].limit.refused[host]
    assert 1 <= refused <= 3
    assert calls(server) == [503] * refused + [200]


def test_the_pacer_spaces_calls_to_its_rate() -> None:
    pacer = PortalPacer(rate=2.0, burst=1)
    delays = [pacer.reserve() for _ in range(4)]
    assert delays[0] == 0
    assert delays[1:] == pytest.approx([0.5, 1.0, 1.5], abs=0.05)
    pacer.refused()
    assert PortalPacer(rate=0, burst=1).reserve() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_webhook_code_never_reaches_a_log_or_a_message(
    start_sandbox: Start, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await portal(start_sandbox)
    bitrix = client(server, http, attempts=2)
    errors: list[Bitrix24Error] = []
    server.app[FAULTS].add(r"crm\.deal\.get", 500, times=1)
    await bitrix.deal(759)  # one retry, logged
    for call in (bitrix.deal(1), client(server, http, code="wrongcode").deal(759)):
        with pytest.raises(Bitrix24Error) as failed:
            await call
        errors.append(failed.value)
    down = Bitrix24Client(
        http, f"http://127.0.0.1:{_free_port()}/rest/1/{CODE}/", attempts=2, backoff_max_s=0.01
    )
    with pytest.raises(Bitrix24Error) as unreachable:
        await down.lead(31)
    errors.append(unreachable.value)
    assert unreachable.value.status is None and unreachable.value.retryable
    with pytest.raises(ValueError) as bad_url:
        Bitrix24Client(http, f"https://portal.example/{CODE}/crm.deal.get.json")

    assert any("retrying" in r.getMessage() for r in caplog.records)
    # the sandbox's own access log (the portal's side) is not the client's
    client_lines = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    texts = client_lines + [str(e) for e in errors] + [repr(e) for e in errors] + [str(bad_url.value)]
    texts += [repr(bitrix), repr(down)]
    assert not [t for t in texts if CODE in t]
    assert f"127.0.0.1:{server.port}" in repr(bitrix)
