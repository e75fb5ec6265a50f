"""Real PostgreSQL and RabbitMQ on loopback (see scripts/services.sh); every test gets its own
database (cloned from a template holding the schema) and its own broker names (a unique prefix)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app as create_gateway
from sandbox.app import SandboxConfig
from sandbox.app import create_app as create_sandbox
from scorer import results
from shared import broker, db
from shared.db import tasks
from shared.settings import Settings

PG_ROOT = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TEMPLATE = f"metrika_test_tmpl_{os.getpid()}"
API_KEY = "test-api-key"


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(f"{PG_ROOT}/postgres")


@pytest.fixture(scope="session")
def template_db() -> Any:
    async def create() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(f"{PG_ROOT}/{TEMPLATE}")
        try:
            await db.prepare_database(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield TEMPLATE
    asyncio.run(drop())


@pytest.fixture
async def database_url(template_db: str) -> AsyncIterator[str]:
    name = f"metrika_test_{uuid.uuid4().hex[:12]}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    yield f"{PG_ROOT}/{name}"
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def queue_prefix() -> AsyncIterator[str]:
    prefix = f"test.{uuid.uuid4().hex[:12]}"
    yield prefix
    connection = await aio_pika.connect(AMQP_URL)
    try:
        topology = broker.Topology(prefix)
        for key in broker.ROUTING_KEYS:
            for name in (topology.queue(key), topology.dead_queue(key)):
                channel = await connection.channel()
                try:
                    await channel.queue_delete(name)
                except Exception:
                    pass
        for name in (topology.exchange, topology.dead_exchange):
            channel = await connection.channel()
            try:
                await channel.exchange_delete(name)
            except Exception:
                pass
    finally:
        await connection.close()


@pytest.fixture
async def sandbox(start_sandbox: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """The Metrika API sandbox on a free loopback port; small days so tests stay fast."""
    return await start_sandbox(processing_seconds=0.2, visits_per_day=400, conversion_processing_seconds=0.3)


@pytest.fixture
async def start_sandbox() -> AsyncIterator[Callable[..., Awaitable[TestServer]]]:
    """A factory of sandbox servers, each with its own SandboxConfig(**config); all closed at teardown."""
    servers: list[TestServer] = []

    async def start(**config: Any) -> TestServer:
        server = TestServer(create_sandbox(SandboxConfig(**config)), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def settings(database_url: str, queue_prefix: str, sandbox: TestServer, tmp_path: Any) -> Settings:
    return Settings(
        database_url=database_url,
        amqp_url=AMQP_URL,
        metrika_api_url=str(sandbox.make_url("")).rstrip("/"),
        api_keys=API_KEY,
        token_encryption_key="test-encryption-key",
        metrika_score_env="development",
        queue_prefix=queue_prefix,
        outbox_interval_s=0.2,
        work_dir=str(tmp_path / "work"),
        logs_poll_initial_s=0.2,
        logs_poll_max_s=0.5,
        http_retry_attempts=4,
        http_retry_max_s=0.2,
        prefetch_count=2,
        upload_poll_s=0.2,
        retry_base_s=0.2,
        retry_max_s=0.5,
        sweep_interval_s=0.2,
        stale_after_s=5,
        shutdown_grace_s=5,
        metrics_port=0,  # a test that wants a consumer's /metrics gives it a free port
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings.database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The gateway app on a real port, with the API key sent by default."""
    app = create_gateway(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.session.headers["Authorization"] = f"Bearer {API_KEY}"
    yield client
    await client.close()


ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


@pytest.fixture
async def run_service() -> AsyncIterator[Callable[[ServiceMain, Settings], asyncio.Event]]:
    """Start a consumer service's `main(settings, stop)` as a task; stopped (gracefully) at teardown."""
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(main: ServiceMain, settings: Settings) -> asyncio.Event:
        stop = asyncio.Event()
        started.append((stop, asyncio.create_task(main(settings, stop))))
        return stop

    yield start
    for stop, _task in started:
        stop.set()
    for _, task in started:
        await asyncio.wait_for(task, timeout=30)


def override(settings: Settings, **changes: Any) -> Settings:
    """A validated copy of `settings` with some fields changed."""
    return Settings(**{**settings.model_dump(), **changes})


async def outbox_drained(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def next_message(queue: Any, timeout: float = 5) -> Any:
    """The next message on an aio-pika queue, waiting for it (publishing may follow the answer)."""
    return await wait_for(lambda: queue.get(fail=False), timeout=timeout, interval=0.02)


async def wait_for(
    predicate: Callable[[], Awaitable[Any]],
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll an async predicate until it returns something truthy; an AssertionError naming `what` and the
    last value after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def completed_task(
    pool: asyncpg.Pool,
    n: int,
    *,
    start: dt.datetime,
    step_s: int = 1,
    duration_step: int = 0,
    counter: int = 1,
    token_enc: bytes = b"x",
) -> uuid.UUID:
    """A finished scoring task with `n` level-4+ visits from `start` (naive counter time, as the Logs
    API gives it), `step_s` seconds apart, lasting 100 s plus `duration_step` more each; ids past 2**63."""
    task_id = uuid.uuid4()
    await tasks.insert(pool, task_id, start.date(), counter, token_enc)
    await tasks.claim(pool, task_id)
    visits = pd.DataFrame(
        {
            "visitId": [str(2**64 - 1 - i) for i in range(n)],
            "clientId": [str(2**63 + i) for i in range(n)],
            "dateTime": [f"{start + dt.timedelta(seconds=i * step_s):%Y-%m-%d %H:%M:%S}" for i in range(n)],
            "visitDuration": [100 + i * duration_step for i in range(n)],
            "score": [0.9] * n,
            "model_version": ["v1"] * n,
        }
    )
    rows_csv = results.csv_chunks(results.visits_table(task_id, visits), None)
    async with pool.acquire() as conn:
        assert await tasks.store_result(conn, task_id, rows_csv, n, total_visits=n * 4, model_version="v1")
    return task_id
