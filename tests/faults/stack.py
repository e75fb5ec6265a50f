"""The conversions stack as real processes for fault tests: a sandbox, a gateway and uploaders started
with `tests.faults.procs`, and the HTTP calls the tests make against them (webhooks, statuses, the
sandbox's fault registry and received lines)."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from shared.settings import Settings
from tests.conftest import API_KEY, wait_for
from tests.faults.procs import Proc, free_port, settings_env, start_sandbox

COUNTER = 424242
FINAL = ("completed", "error")
OPEN = ("accepted", "pending", "uploaded", "processing")
UPLOAD_PATH = r"/offline_conversions/upload$"
STATUS_PATH = r"/offline_conversions/uploading/\d+$"
_client_ids = itertools.count(10**18 + 7_000_000)


def fault_settings(
    *, database_url: str, amqp_url: str, queue_prefix: str, sandbox_port: int, **overrides: Any
) -> Settings:
    """Settings of every process of one test: loopback ports, and timings scaled from hours and minutes
    down to seconds (durable retry 0.5 s growing to 2 s, sweeps every second, a batch untouched for 5 s
    is stale) so that a fault test runs in seconds."""
    gateway_port = free_port()
    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": amqp_url,
        "queue_prefix": queue_prefix,
        "metrika_api_url": f"http://127.0.0.1:{sandbox_port}",
        "port": gateway_port,
        "host": "127.0.0.1",
        "public_base_url": f"http://127.0.0.1:{gateway_port}",
        "api_keys": API_KEY,
        "token_encryption_key": "faults-test-encryption-key",
        "outbox_interval_s": 0.2,
        "upload_poll_s": 0.3,
        "http_retry_attempts": 2,
        "http_retry_max_s": 0.2,
        "metrika_timeout_s": 10,
        "retry_base_s": 0.5,
        "retry_max_s": 2,
        "retry_horizon_s": 600,
        "sweep_interval_s": 1,
        "stale_after_s": 5,
        "shutdown_grace_s": 2,
        "webhook_rate_per_minute": 1_000_000,
        **overrides,
    }
    return Settings(**values)


def recent(hours: float = 1) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).replace(microsecond=0).isoformat()


def new_client_ids(n: int) -> list[str]:
    return [str(next(_client_ids)) for _ in range(n)]


def conversion(client_id: str) -> dict[str, Any]:
    return {"client_id": client_id, "target": "purchase", "date_time": recent()}


@dataclass
class Webhook:
    id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Webhook-Secret": self.secret}


@dataclass
class Stack:
    """The processes of one test and the calls made to them. `procs` is the list `procs.running()`
    cleans up; every process is started with `env` (the test's Settings plus development mode)."""

    procs: list[Proc]
    http: aiohttp.ClientSession
    settings: Settings
    sandbox: Proc | None = None
    gateway: Proc | None = None
    uploaders: list[Proc] = field(default_factory=list)

    @property
    def sandbox_url(self) -> str:
        return self.settings.metrika_api_url

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def env(self, **extra: Any) -> dict[str, str]:
        return settings_env(self.settings, metrika_score_env="development", **extra)

    async def start_sandbox(self, **options: Any) -> Proc:
        port = int(self.sandbox_url.rsplit(":", 1)[1])
        self.sandbox, _ = await start_sandbox(self.procs, port, **options)
        return self.sandbox

    async def start_gateway(self) -> Proc:
        proc = Proc("gateway", ["-m", "gateway"], env=self.env())
        self.procs.append(proc)
        await proc.start()

        async def up() -> bool:
            try:
                async with self.http.get(f"{self.gateway_url}/health") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await proc.wait_until(up, timeout=30)
        self.gateway = proc
        return proc

    async def start_uploader(self, name: str | None = None) -> Proc:
        """An uploader process, returned once it consumes its queue."""
        proc = Proc(name or f"uploader{len(self.uploaders) + 1}", ["-m", "uploader"], env=self.env())
        self.procs.append(proc)
        self.uploaders.append(proc)
        await proc.start()
        await proc.wait_for_line(r"consuming ", timeout=30)
        return proc

    # --- the gateway ---------------------------------------------------------------------------------
    async def webhook(self) -> Webhook:
        async with self.http.post(
            f"{self.gateway_url}/webhook/offline-conversions",
            json={"name": "faults", "counter_id": COUNTER, "token": "sandbox-token"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        return Webhook(body["webhook_id"], body["secret"])

    async def submit(self, hook: Webhook, conversions: list[dict[str, Any]]) -> str:
        status, body, _ = await self.try_submit(hook, conversions)
        assert status == 200, body
        return str(body["batch_id"])

    async def try_submit(
        self, hook: Webhook, conversions: list[dict[str, Any]], timeout: float = 30
    ) -> tuple[int, Any, Mapping[str, str]]:
        """(status, JSON body or the raw text, headers) of one submission."""
        async with self.http.post(
            f"{self.gateway_url}/webhook/offline-conversions/{hook.id}",
            json={"conversions": conversions},
            headers=hook.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = text
            return resp.status, body, resp.headers

    async def batch_status(self, hook: Webhook, batch_id: str) -> dict[str, Any]:
        async with self.http.get(
            f"{self.gateway_url}/webhook/offline-conversions/{hook.id}/status",
            params={"batch_id": batch_id},
            headers=hook.headers,
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return dict(body)

    async def single(self, client_id: str) -> str:
        async with self.http.post(
            f"{self.gateway_url}/conversions/single",
            json={**conversion(client_id), "counter": COUNTER, "token": "sandbox-token"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return str(body["upload_id"])

    async def upload_status(self, upload_id: str) -> dict[str, Any]:
        async with self.http.get(
            f"{self.gateway_url}/conversions/{upload_id}/status",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return dict(body)

    async def health(self) -> dict[str, Any]:
        async with self.http.get(f"{self.gateway_url}/health") as resp:
            return {"http_status": resp.status, **(await resp.json(content_type=None))}

    # --- the sandbox ---------------------------------------------------------------------------------
    async def register(self, client_ids: list[str]) -> None:
        """Make the ids known visitors of COUNTER, so their uploads link (else LINKAGE_FAILURE)."""
        async with self.http.post(
            f"{self.sandbox_url}/sandbox/clients", json={"counter": COUNTER, "client_ids": client_ids}
        ) as resp:
            assert resp.status == 201, await resp.text()

    async def add_fault(self, **fault: Any) -> None:
        async with self.http.post(f"{self.sandbox_url}/sandbox/faults", json=fault) as resp:
            assert resp.status == 201, await resp.text()

    async def clear_faults(self) -> None:
        async with self.http.delete(f"{self.sandbox_url}/sandbox/faults") as resp:
            assert resp.status == 200, await resp.text()

    async def http_faults(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sandbox_url}/sandbox/faults") as resp:
            return list((await resp.json())["http"])

    async def received(self) -> collections.Counter[str]:
        """How many times Metrika received each ClientId (the sandbox's received lines)."""
        async with self.http.get(f"{self.sandbox_url}/sandbox/conversions", params={"counter": COUNTER}) as r:
            lines = (await r.json())["lines"]
        return collections.Counter(line["row"]["ClientId"] for line in lines)


async def until(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """conftest's wait_for, with the bound always given."""
    return await wait_for(predicate, timeout=timeout, interval=interval, what=what)


@dataclass
class Answer:
    client_id: str
    sent: float  # time.monotonic() when the request left
    status: int  # 0: no answer (the request failed or timed out)
    body: Any
    retry_after: str | None


class Sender:
    """Single-conversion webhook requests at a fixed rate (each its own task, so a slow answer never
    slows the rate) until `stop` is set; every answer is kept."""

    def __init__(self, stack: Stack, hook: Webhook, client_ids: list[str], rate: float) -> None:
        self.stack, self.hook, self.ids, self.rate = stack, hook, iter(client_ids), rate
        self.answers: list[Answer] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        n = 0
        while not self.stop.is_set():
            task = asyncio.create_task(self._one(next(self.ids)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
            await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
        await asyncio.gather(*pending)

    async def _one(self, client_id: str) -> None:
        sent = time.monotonic()
        try:
            status, body, headers = await self.stack.try_submit(self.hook, [conversion(client_id)])
            retry_after = headers.get("Retry-After")
        except Exception as exc:  # a hung or dropped request is an answer too: recorded, not accepted
            status, body, retry_after = 0, repr(exc), None
        self.answers.append(Answer(client_id, sent, status, body, retry_after))

    def accepted(self) -> dict[str, str]:
        """client_id -> batch_id of every request answered 200."""
        return {a.client_id: a.body["batch_id"] for a in self.answers if a.status == 200}


BATCH_STATES = """
SELECT b.id::text AS id, b.status, b.error,
       (SELECT string_agg(DISTINCT c.reason, '; ') FROM conversions c
         WHERE c.batch_id = b.id AND c.reason IS NOT NULL) AS reasons
FROM batches b WHERE b.id = ANY($1::uuid[])
"""


async def wait_all_completed(database_url: str, batch_ids: list[str], timeout: float) -> float:
    """Seconds until every batch is `completed`; fails at once when one ends in `error`, and after
    `timeout` with the count of batches per status and a few that are not done."""
    started = time.monotonic()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        while True:
            rows = await pool.fetch(BATCH_STATES, batch_ids)
            counts = collections.Counter(r["status"] for r in rows)
            counts["missing"] = len(batch_ids) - len(rows)
            failed = [dict(r) for r in rows if r["status"] == "error"]
            assert not failed, f"{len(failed)} batches ended in error, e.g. {failed[:3]}"
            if counts["completed"] == len(batch_ids):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                stuck = [dict(r) for r in rows if r["status"] != "completed"][:3]
                raise AssertionError(f"not all batches completed in {timeout}s: {dict(counts)}, e.g. {stuck}")
            await asyncio.sleep(0.5)
    finally:
        await pool.close()


def assert_exactly_once(received: collections.Counter[str], accepted: set[str]) -> None:
    """Every accepted conversion reached Metrika exactly once, and nothing else did."""
    lost = sorted(accepted - set(received))
    duplicated = {cid: n for cid, n in received.items() if n > 1}
    unexpected = sorted(set(received) - accepted)
    assert not lost and not duplicated and not unexpected, (
        f"lost {len(lost)} {lost[:5]}, duplicated {len(duplicated)} {list(duplicated.items())[:5]}, "
        f"never accepted {len(unexpected)} {unexpected[:5]}"
    )
