"""Webhook ingest throughput and latency, each next to its baseline in the same run.

1. Batches of 1000 conversions through the real gateway (validated, committed to Postgres with an outbox
   row, published to RabbitMQ with confirms) vs a bare asyncpg COPY of the same rows into the same table.
2. Single-conversion webhook requests: requests/s and p50/p99 latency vs a bare aiohttp endpoint that only
   parses the JSON, both as separate server processes under the same concurrent load from this process.

Usage: python bench/ingest.py [--rounds 3] [--batches 10] [--seconds 5] [--concurrency 16]
Needs PostgreSQL and RabbitMQ on loopback (make services). Uses its own database and queue prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aio_pika
import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import broker, db  # noqa: E402
from shared.db import batches  # noqa: E402

PG_ROOT = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def conversions(n: int, offset: int = 0) -> list[dict[str, Any]]:
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    return [
        {
            "client_id": str(10**18 + offset + i),
            "target": "purchase",
            "date_time": when,
            "price": 1500.5,
            "currency": "RUB",
            "purchase_id": f"order{offset + i}",
        }
        for i in range(n)
    ]


async def wait_http(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.get(url) as resp:
                if resp.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


async def load(
    session: aiohttp.ClientSession, url: str, bodies: list[Any], headers: dict[str, str], concurrency: int
) -> tuple[float, list[float]]:
    """Send every body with `concurrency` requests in flight: (requests/s, latencies in ms)."""
    latencies: list[float] = []
    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            started = time.perf_counter()
            # bytes are a CRM's form body, anything else a JSON body
            sent = {"data": body} if isinstance(body, bytes) else {"json": body}
            async with session.post(url, headers=headers, **sent) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"{url}: HTTP {resp.status}: {await resp.text()}")
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(bodies) / (time.perf_counter() - started), latencies


async def copy_baseline(dsn: str, n_batches: int) -> float:
    """Rows/s of a bare COPY of the same 1000-row batches into the conversions table."""
    conn = await asyncpg.connect(dsn)
    try:
        token = b"x"
        started = time.perf_counter()
        for i in range(n_batches):
            batch_id = uuid.uuid4()
            async with conn.transaction():
                await batches.insert_batch(conn, batch_id, "webhook", 1, token, "accepted")
                when = dt.datetime.now(dt.UTC)
                rows = [
                    (
                        batch_id,
                        j,
                        "CLIENT_ID",
                        str(10**18 + i * 1000 + j),
                        "purchase",
                        when,
                        Decimal("1500.5"),
                        "RUB",
                        f"order{j}",
                        "pending",
                        None,
                    )
                    for j in range(1000)
                ]
                await batches.insert_conversions(conn, rows)
        return n_batches * 1000 / (time.perf_counter() - started)
    finally:
        await conn.close()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Webhook-Secret"] = "{secret}"
"""


def wrk(url: str, body: Any, secret: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk, a C load generator that leaves the CPU to the servers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=json.dumps(body), secret=secret))
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: some requests failed:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, _wrk_ms(out, "50%"), _wrk_ms(out, "99%")


def _wrk_ms(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace) -> None:
    name = f"metrika_bench_{uuid.uuid4().hex[:8]}"
    dsn = f"{PG_ROOT}/{name}"
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    await db.ensure_database(dsn)
    gateway_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "AMQP_URL": AMQP_URL,
        "METRIKA_SCORE_ENV": "development",
        "API_KEYS": API_KEY,
        "QUEUE_PREFIX": prefix,
        "PORT": str(gateway_port),
        "WEBHOOK_RATE_PER_MINUTE": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    procs = [start(["-m", "gateway"], env), start(["bench/bare_app.py", str(bare_port)], env)]
    gateway = f"http://127.0.0.1:{gateway_port}"
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_http(session, f"{gateway}/health")
            await wait_http(session, f"http://127.0.0.1:{bare_port}/")
            auth = {"Authorization": f"Bearer {API_KEY}"}
            async with session.post(
                f"{gateway}/webhook/offline-conversions",
                headers=auth,
                json={"name": "bench", "counter_id": 1, "token": "t"},
            ) as resp:
                hook = await resp.json()
            url = f"{gateway}/webhook/offline-conversions/{hook['webhook_id']}"
            secret = {"X-Webhook-Secret": hook["secret"]}
            amo_map = {"target_by_status": {"142": "purchase"}, "client_id_field": "_YM_UID"}
            async with session.post(
                f"{gateway}/webhook/offline-conversions",
                headers=auth,
                json={"name": "amo", "counter_id": 1, "token": "t", "source": "amocrm", "mapping": amo_map},
            ) as resp:
                amo_hook = await resp.json()
            # the URL as amoCRM calls it (the secret in its path), with a three-lead status hook
            amo_url = f"{gateway}/webhook/offline-conversions/{amo_hook['webhook_id']}/{amo_hook['secret']}"
            form = {"Content-Type": "application/x-www-form-urlencoded"}

            # warm both paths up
            await load(session, url, [{"conversions": conversions(1)}] * 50, secret, 4)
            await load(
                session,
                f"http://127.0.0.1:{bare_port}/webhook/x",
                [{"conversions": conversions(1)}] * 50,
                {},
                4,
            )

            # Each measurement alternates with its baseline, round by round, and the medians are
            # compared: this machine's speed drifts within a run, and both sides should see the drift.
            # 1. batches of 1000, durable, vs a bare COPY
            batch_rows: list[float] = []
            copy_rows: list[float] = []
            for r in range(args.rounds):
                bodies = [
                    {"conversions": conversions(1000, (r * args.batches + i) * 1000)}
                    for i in range(args.batches)
                ]
                rps, _ = await load(session, url, bodies, secret, 2)
                batch_rows.append(rps * 1000)
                copy_rows.append(await copy_baseline(dsn, args.batches))

            # 2. single-conversion requests vs a bare endpoint, same load
            bare_url = f"http://127.0.0.1:{bare_port}/webhook/x"
            bare_runs: list[tuple[float, float, float]] = []
            single_runs: list[tuple[float, float, float]] = []
            crm_runs: list[tuple[float, float, float]] = []
            # the batches left work for autovacuum: do it now rather than in the middle of a round
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("VACUUM ANALYZE batches, conversions, outbox, rate_windows")
            finally:
                await conn.close()
            if shutil.which("wrk"):
                loader = "wrk"
                single = {"conversions": conversions(1)}
                for target in (bare_url, url):  # warm-up, not counted
                    wrk(target, single, hook["secret"], args.concurrency, 2)
                for _ in range(args.rounds):
                    bare_runs.append(wrk(bare_url, single, hook["secret"], args.concurrency, args.seconds))
                    single_runs.append(wrk(url, single, hook["secret"], args.concurrency, args.seconds))
            else:
                loader = "aiohttp client in this process (install wrk for a lighter load generator)"
                for r in range(args.rounds):
                    singles = [
                        {"conversions": conversions(1, r * args.singles + i)} for i in range(args.singles)
                    ]
                    for runs, target in ((bare_runs, bare_url), (single_runs, url)):
                        rps, lat = await load(session, target, singles, secret, args.concurrency)
                        runs.append((rps, pct(lat, 50), pct(lat, 99)))
                    hooks = [amo_hook_body(r * args.singles + i) for i in range(args.singles)]
                    rps, lat = await load(session, amo_url, hooks, form, args.concurrency)
                    crm_runs.append((rps, pct(lat, 50), pct(lat, 99)))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        await drop(name, prefix)

    median = statistics.median
    gateway_rows, copy_rate = median(batch_rows), median(copy_rows)
    print(f"{args.rounds} rounds, each measurement next to its baseline; medians (rounds in brackets)")
    print(
        f"webhook batches of 1000 (durable: Postgres commit + outbox + RabbitMQ confirm): "
        f"{gateway_rows:,.0f} rows/s  [{_each(batch_rows)}]"
    )
    print(f"bare asyncpg COPY of the same rows: {copy_rate:,.0f} rows/s  [{_each(copy_rows)}]")
    batch_ratios = ", ".join(f"{g / c:.2f}" for g, c in zip(batch_rows, copy_rows, strict=True))
    print(f"  ratio gateway / COPY: {gateway_rows / copy_rate:.2f}  [{batch_ratios}]   (target >= 0.50)")
    print(f"load generator: {loader}, {args.concurrency} connections")
    single_rps, single_p50, single_p99 = (median(run[i] for run in single_runs) for i in range(3))
    bare_rps, bare_p50, bare_p99 = (median(run[i] for run in bare_runs) for i in range(3))
    print(
        f"single-conversion webhook requests (durable): {single_rps:,.0f} req/s, "
        f"p50 {single_p50:.1f} ms, p99 {single_p99:.1f} ms  [{_each([run[0] for run in single_runs])} req/s]"
    )
    print(
        f"bare aiohttp endpoint, same load: {bare_rps:,.0f} req/s, "
        f"p50 {bare_p50:.1f} ms, p99 {bare_p99:.1f} ms  [{_each([run[0] for run in bare_runs])} req/s]"
    )
    ratios = ", ".join(f"{g[0] / b[0]:.2f}" for g, b in zip(single_runs, bare_runs, strict=True))
    print(
        f"  ratio gateway / bare: {single_rps / bare_rps:.2f}  [{ratios}]"
        f"   (target >= 0.30; p99 target < 50 ms)"
    )
    if crm_runs:
        crm_rps, crm_p50, crm_p99 = (median(run[i] for run in crm_runs) for i in range(3))
        crm_ratios = ", ".join(f"{c[0] / g[0]:.2f}" for c, g in zip(crm_runs, single_runs, strict=True))
        print(
            f"amoCRM hooks (3 leads, form body, durable): {crm_rps:,.0f} req/s, p50 {crm_p50:.1f} ms, "
            f"p99 {crm_p99:.1f} ms  [{_each([run[0] for run in crm_runs])} req/s]"
        )
        print(
            f"  ratio amoCRM / JSON single: {crm_rps / single_rps:.2f}  [{crm_ratios}]"
            f"   (target >= 0.80; p99 target < 50 ms)"
        )
    else:
        print("amoCRM hooks: measured only with the aiohttp load generator (run without wrk)")


def amo_hook_body(n: int) -> bytes:
    """amoCRM's status hook for three leads moved to 142 (won), each with its Yandex ClientID field."""
    pairs: list[tuple[str, str]] = []
    now = str(int(time.time()) - 60)
    for i in range(3):
        lead = f"leads[status][{i}]"
        pairs += [
            (f"{lead}[id]", str(n * 3 + i)),
            (f"{lead}[status_id]", "142"),
            (f"{lead}[pipeline_id]", "9217056"),
            (f"{lead}[price]", "15000"),
            (f"{lead}[updated_at]", now),
            (f"{lead}[custom_fields][0][id]", "4001"),
            (f"{lead}[custom_fields][0][code]", "_YM_UID"),
            (f"{lead}[custom_fields][0][values][0][value]", str(10**18 + n * 3 + i)),
        ]
    pairs += [("account[id]", "29085955"), ("account[subdomain]", "bench")]
    return urlencode(pairs).encode()


def _each(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


async def drop(name: str, prefix: str) -> None:
    """A bench run's database `name` and its queues and exchanges (QUEUE_PREFIX `prefix`), gone."""
    conn = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        topology = broker.Topology(prefix)
        for key in broker.ROUTING_KEYS:
            await channel.queue_delete(topology.queue(key))
            await channel.queue_delete(topology.dead_queue(key))
        await channel.exchange_delete(topology.exchange)
        await channel.exchange_delete(topology.dead_exchange)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements, each next to its baseline")
    parser.add_argument("--batches", type=int, default=10, help="batches of 1000 per round")
    parser.add_argument("--singles", type=int, default=2000, help="requests per round without wrk")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5, help="duration of each wrk run")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
