"""The Logs API client against the sandbox over real loopback HTTP."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sandbox.app import FAULTS, LOG_REQUESTS, REQUEST_LOG
from sandbox.simulator import HIT_FIELDS, VISIT_FIELDS, simulate_day, write_tsv
from scorer.logs_api import LogsApiClient, RequestWindow
from shared.metrika import MetrikaError
from shared.settings import Settings

TODAY = date(2024, 3, 10)
DAY = date(2024, 3, 9)
COUNTER = 777
TOKEN = "secret-token-4f9a1c"
VISITS = 300


Start = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def start(start_sandbox: Start) -> Start:
    return functools.partial(
        start_sandbox,
        tokens=frozenset({TOKEN}),
        processing_seconds=0.05,
        visits_per_day=VISITS,
        today=TODAY,
        rps=0,
    )


@pytest.fixture
def session(http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return http


def make_client(
    session: aiohttp.ClientSession, server: TestServer | str, token: str = TOKEN, **kw: Any
) -> LogsApiClient:
    """A client configured as the scorer configures it, by Settings (`kw`: Settings fields)."""
    options: dict[str, Any] = {
        "http_retry_attempts": 4,
        "http_retry_max_s": 0.05,
        "logs_poll_initial_s": 0.02,
        "logs_poll_max_s": 0.1,
        "metrika_timeout_s": 5.0,
    }
    base_url = server if isinstance(server, str) else str(server.make_url(""))
    settings = Settings(metrika_api_url=base_url, **{**options, **kw})
    return LogsApiClient(session, settings, token, COUNTER)


def statuses(server: TestServer) -> list[str]:
    return [r.status for r in server.app[LOG_REQUESTS].requests.values()]


def tsv(fields: list[str], source: str, n_visits: int = VISITS) -> str:
    day = simulate_day(COUNTER, DAY, n_visits=n_visits)
    out = io.StringIO()
    write_tsv(day.visits if source == "visits" else day.hits, fields, out)
    return out.getvalue()


def joined(paths: list[Path]) -> str:
    texts = [p.read_text() for p in paths]
    header = texts[0].split("\n", 1)[0] + "\n"
    assert all(t.startswith(header) for t in texts)
    return header + "".join(t[len(header) :] for t in texts)


async def test_download_visits_and_hits(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start(rows_per_part=120)
    client = make_client(session, server)
    stages: list[tuple[str, float]] = []

    async def on_stage(stage: str, fraction: float) -> None:
        stages.append((stage, fraction))

    visit_fields = VISIT_FIELDS[::-1]
    visits, hits = await asyncio.gather(
        client.download(DAY, "visits", visit_fields, tmp_path, on_stage),
        client.download(DAY, "hits", HIT_FIELDS, tmp_path, lambda stage, fraction: None),
    )
    assert [p.name for p in visits] == [f"visits_{n}.tsv" for n in range(len(visits))]
    assert len(visits) == 3
    assert len(hits) > 3
    assert sorted(tmp_path.glob("visits*.tsv")) == sorted(visits)
    assert sorted(tmp_path.glob("hits*.tsv")) == sorted(hits)
    assert not list(tmp_path.glob("*.part"))
    assert joined(visits) == tsv(visit_fields, "visits")
    assert joined(hits) == tsv(HIT_FIELDS, "hits")

    assert statuses(server) == ["cleaned_by_user", "cleaned_by_user"]
    names = [stage for stage, _ in stages]
    assert names[0] == "evaluate"
    assert names.index("evaluate") < names.index("prepare") < names.index("download")
    assert stages[-1] == ("download", 1.0)
    assert all(0.0 <= fraction <= 1.0 for _, fraction in stages)
    download = [f for stage, f in stages if stage == "download"]
    assert download == sorted(download)


async def test_rate_and_parallel_quotas_are_retried(
    start: Start, session: aiohttp.ClientSession, tmp_path: Path
):
    server = await start(rps=10, max_parallel=1, rows_per_part=60, visits_per_day=100)
    client = make_client(session, server, http_retry_attempts=12, http_retry_max_s=0.5)
    results = await asyncio.gather(
        *(client.download(DAY, "visits", VISIT_FIELDS, tmp_path / str(n), None) for n in range(2))
    )
    for paths in results:
        assert len(paths) == 2
        assert joined(paths) == tsv(VISIT_FIELDS, "visits", 100)
    assert statuses(server) == ["cleaned_by_user", "cleaned_by_user"]
    rejected = {r.status for r in server.app[REQUEST_LOG].records} - {200}
    assert rejected == {429}


def test_request_window_starts_at_most_limit_requests_in_any_window():
    now = [100.0]
    window = RequestWindow(3, window_s=1.0, clock=lambda: now[0])
    assert [window.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [window.reserve() for _ in range(4)] == [1.0, 1.0, 1.0, 2.0]  # each a window after the 3rd before
    now[0] = 105.0  # idle for a while: a full window's worth at once again
    assert [window.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]
    assert RequestWindow(0).reserve() == 0.0  # no limit


async def test_a_download_of_many_parts_paces_itself_under_the_rate_quota(
    start: Start, session: aiohttp.ClientSession, tmp_path: Path
):
    """About 40 calls (evaluate, create, poll, 30 parts, clean) against 20 requests/s per IP: paced at 15/s,
    none is refused (unpaced, the parts come faster than that: 429s, and retries that run out)."""
    server = await start(rps=20, max_parallel=0, rows_per_part=60, processing_seconds=0)
    client = make_client(session, server, logs_api_rps=15)
    visits, hits = await asyncio.gather(
        client.download(DAY, "visits", VISIT_FIELDS, tmp_path),
        client.download(DAY, "hits", HIT_FIELDS, tmp_path),
    )
    assert len(visits) + len(hits) >= 30
    assert joined(hits) == tsv(HIT_FIELDS, "hits")
    records = server.app[REQUEST_LOG].records
    assert len(records) >= 38 and {r.status for r in records} == {200}


async def test_short_503_storm_succeeds(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    server.app[FAULTS].add(r"/part/\d+/download$", 503, times=3)
    server.app[FAULTS].add(r"/logrequests$", 500, times=3, method="POST")
    paths = await make_client(session, server, http_retry_attempts=4).download(
        DAY, "visits", VISIT_FIELDS, tmp_path
    )
    assert joined(paths) == tsv(VISIT_FIELDS, "visits")
    log = server.app[REQUEST_LOG]
    assert [r.status for r in log.find("GET", "/part/0/download")] == [503, 503, 503, 200]
    assert [r.status for r in log.find("POST", "/logrequests")] == [500, 500, 500, 200]
    assert statuses(server) == ["cleaned_by_user"]


async def test_long_503_storm_fails_but_cleans(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    server.app[FAULTS].add(r"/part/\d+/download$", 503, times=None)
    with pytest.raises(MetrikaError) as caught:
        await make_client(session, server, http_retry_attempts=3).download(
            DAY, "visits", VISIT_FIELDS, tmp_path
        )
    error = caught.value
    assert (error.status, error.error_type, error.retryable, error.attempts) == (
        503,
        "backend_error",
        True,
        3,
    )
    assert error.message == "Backend error (sandbox fault)"
    assert "Backend error (sandbox fault)" in str(error) and "3 attempts" in str(error)
    assert "/part/0/download" in str(error)
    log = server.app[REQUEST_LOG]
    assert len(log.find("GET", "/part/0/download")) == 3
    assert [r.status for r in log.find("POST", "/clean")] == [200]
    assert statuses(server) == ["cleaned_by_user"]
    assert list(tmp_path.iterdir()) == []


async def test_poll_storm_cancels_request(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start(processing_seconds=60)
    server.app[FAULTS].add(r"/logrequest/\d+$", 502, times=None)
    with pytest.raises(MetrikaError) as caught:
        await make_client(session, server, http_retry_attempts=2).download(
            DAY, "visits", VISIT_FIELDS, tmp_path
        )
    assert caught.value.status == 502
    assert statuses(server) == ["canceled"]


async def test_bad_request_fails_at_once(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    client = make_client(session, server)
    with pytest.raises(MetrikaError) as caught:
        await client.download(TODAY, "visits", VISIT_FIELDS, tmp_path)
    error = caught.value
    assert (error.status, error.error_type, error.retryable, error.quota) == (
        400,
        "invalid_parameter",
        False,
        False,
    )
    assert "today" in error.message and error.message in str(error)
    with pytest.raises(MetrikaError, match="ym:pv:URL"):
        await client.download(DAY, "visits", ["ym:s:visitID", "ym:pv:URL"], tmp_path)
    assert len(server.app[REQUEST_LOG].records) == 2  # no retries
    assert statuses(server) == []


async def test_wrong_token(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    with pytest.raises(MetrikaError) as caught:
        await make_client(session, server, token="not-the-token").download(
            DAY, "visits", VISIT_FIELDS, tmp_path
        )
    assert (caught.value.status, caught.value.error_type) == (403, "invalid_token")
    assert "Invalid oauth_token" in str(caught.value)
    assert "not-the-token" not in str(caught.value)


async def test_processing_failed(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    server.app[FAULTS].fail_processing()
    with pytest.raises(MetrikaError, match="processing_failed") as caught:
        await make_client(session, server).download(DAY, "hits", HIT_FIELDS, tmp_path)
    # Yandex's processing failed: a new request may pass, so the task retries it later
    assert (caught.value.error_type, caught.value.retryable) == ("processing_failed", True)
    assert statuses(server) == ["cleaned_by_user"]


async def test_evaluate_impossible(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    server.app[FAULTS].override_evaluation(False, -6)
    with pytest.raises(MetrikaError) as caught:
        await make_client(session, server).download(DAY, "visits", VISIT_FIELDS, tmp_path)
    assert caught.value.quota
    assert "possible=false" in str(caught.value) and "max_possible_day_quantity=-6" in str(caught.value)
    # the counter's storage frees as log requests are cleaned: the task retries later
    assert caught.value.retryable
    assert statuses(server) == []


async def test_quota_429_is_retried_then_flagged(
    start: Start, session: aiohttp.ClientSession, tmp_path: Path
):
    server = await start()
    server.app[FAULTS].add("evaluate", 429, times=2, error_type="quota_requests_by_ip")
    paths = await make_client(session, server).download(DAY, "visits", VISIT_FIELDS, tmp_path)
    assert len(paths) == 1
    server.app[FAULTS].add("evaluate", 429, times=None, error_type="quota_requests_by_uid")
    with pytest.raises(MetrikaError) as caught:
        await make_client(session, server).download(DAY, "visits", VISIT_FIELDS, tmp_path)
    assert (caught.value.quota, caught.value.error_type, caught.value.attempts) == (
        True,
        "quota_requests_by_uid",
        4,
    )


async def test_cancel_mid_poll_cancels_request(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start(processing_seconds=60)
    polling = asyncio.Event()
    prepare_reports: list[float] = []

    def on_stage(stage: str, fraction: float) -> None:
        if stage == "prepare":
            prepare_reports.append(fraction)
            if len(prepare_reports) >= 3:  # at least two polls answered 'created'
                polling.set()

    task = asyncio.create_task(
        make_client(session, server).download(DAY, "visits", VISIT_FIELDS, tmp_path, on_stage)
    )
    await asyncio.wait_for(polling.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert statuses(server) == ["canceled"]
    assert [r.status for r in server.app[REQUEST_LOG].find("POST", "/cancel")] == [200]


async def test_cancel_mid_download_cleans_request(
    start: Start, session: aiohttp.ClientSession, tmp_path: Path
):
    server = await start()
    server.app[FAULTS].add(r"/download$", None, times=None, delay=10)
    downloading = asyncio.Event()

    def on_stage(stage: str, fraction: float) -> None:
        if stage == "download":
            downloading.set()

    task = asyncio.create_task(
        make_client(session, server).download(DAY, "visits", VISIT_FIELDS, tmp_path, on_stage)
    )
    await asyncio.wait_for(downloading.wait(), 5)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert statuses(server) == ["cleaned_by_user"]
    assert list(tmp_path.iterdir()) == []


async def test_stale_files_are_replaced(start: Start, session: aiohttp.ClientSession, tmp_path: Path):
    server = await start()
    (tmp_path / "visits_7.tsv").write_text("stale")
    (tmp_path / "visits_0.tsv.part").write_text("stale")
    (tmp_path / "visits_notes.txt").write_text("keep")
    paths = await make_client(session, server).download(DAY, "visits", ["ym:s:visitID"], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["visits_0.tsv", "visits_notes.txt"]
    assert paths == [tmp_path / "visits_0.tsv"]


async def test_connection_errors_are_retried_and_reported(session: aiohttp.ClientSession, tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(session, f"http://127.0.0.1:{port}", http_retry_attempts=2)
    with pytest.raises(MetrikaError) as caught:
        await client.download(DAY, "visits", VISIT_FIELDS, tmp_path)
    assert (caught.value.error_type, caught.value.retryable, caught.value.attempts) == (
        "connection_error",
        True,
        2,
    )
    assert "evaluate" in str(caught.value)


async def test_token_never_leaks(
    start: Start, session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    server = await start()
    server.app[FAULTS].add(r"/download$", 503, times=None)
    client = make_client(session, server, http_retry_attempts=2)
    assert TOKEN not in repr(client)
    errors: list[MetrikaError] = []
    for day in (DAY, TODAY):
        with pytest.raises(MetrikaError) as caught:
            await client.download(day, "visits", VISIT_FIELDS, tmp_path)
        errors.append(caught.value)
    for error in errors:
        assert TOKEN not in str(error) and TOKEN not in repr(error) and TOKEN not in repr(error.__cause__)
    assert TOKEN not in caplog.text
    assert "retrying" in caplog.text
    async with session.get(str(server.make_url("/sandbox/requests"))) as resp:
        assert TOKEN not in await resp.text()


async def test_bad_arguments(session: aiohttp.ClientSession, tmp_path: Path):
    client = make_client(session, "http://127.0.0.1:9")
    with pytest.raises(ValueError):
        await client.download(DAY, "sessions", VISIT_FIELDS, tmp_path)
    with pytest.raises(ValueError):
        await client.download(DAY, "visits", [], tmp_path)


class RecordingLedger:
    """scorer.logs_api.Ledger, in memory."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def created(self, request_id: str, source: str) -> None:
        self.events.append(("created", request_id))

    async def released(self, request_id: str) -> None:
        self.events.append(("released", request_id))


async def test_ledger_hears_of_every_request_and_its_release(
    start: Start, session: aiohttp.ClientSession, tmp_path: Path
):
    server = await start()
    ledger = RecordingLedger()
    await make_client(session, server).download(DAY, "visits", VISIT_FIELDS, tmp_path, ledger=ledger)
    (request_id,) = [str(r) for r in server.app[LOG_REQUESTS].requests]
    assert ledger.events == [("created", request_id), ("released", request_id)]

    # a request that could not be released (Yandex kept failing) is not reported released
    server.app[FAULTS].add(r"/part/\d+/download$", 503, times=None)
    server.app[FAULTS].add(r"/clean$", 503, times=None)
    ledger = RecordingLedger()
    with pytest.raises(MetrikaError):
        await make_client(session, server, http_retry_attempts=2).download(
            DAY, "visits", VISIT_FIELDS, tmp_path, ledger=ledger
        )
    assert [event for event, _ in ledger.events] == ["created"]
    assert statuses(server) == ["cleaned_by_user", "processed"]


async def test_release_frees_any_request_by_id(start: Start, session: aiohttp.ClientSession):
    server = await start(processing_seconds=60)
    client = make_client(session, server)
    waiting = str((await client.create(DAY, "visits", VISIT_FIELDS))["request_id"])
    assert await client.release(waiting)  # still created: canceled
    assert statuses(server) == ["canceled"]
    assert await client.release(waiting)  # already canceled: nothing to do, and no error
    assert await client.release("999999")  # unknown to Yandex: nothing to free
    server.app[FAULTS].add(r"/logrequest/\d+$", 503, times=None)
    assert not await make_client(session, server, http_retry_attempts=1).release(waiting)  # later
