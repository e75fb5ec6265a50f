"""How fast the uploader drains a backlog of single-conversion batches, next to its floor in the same run.

1. N single-conversion batches stored as the gateway stores them (groups of 64 per message), then
   `--uploaders` uploader processes drain them against the sandbox (a separate process, Yandex's quotas:
   30 management requests/s per IP, 3 in parallel per token): time until every batch is final.
2. The floor: a bare client uploads the same N conversions to a fresh sandbox counter, one file each,
   3 at a time, and polls each to PROCESSED (the same two calls per conversion, nothing else).

Usage: python bench/drain.py [--batches 2000] [--uploaders 2]
Needs PostgreSQL and RabbitMQ on loopback (make services). Uses its own database and queue prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import AMQP_URL, PG_ROOT, drop, free_port, wait_http  # noqa: E402
from shared import broker, db  # noqa: E402
from shared.crypto import TokenCipher  # noqa: E402
from shared.db import batches  # noqa: E402
from shared.settings import Settings  # noqa: E402

KEY = "bench-drain-key"
PER_MESSAGE = 64


async def store_backlog(dsn: str, prefix: str, n: int, counter: int) -> None:
    """n single-conversion batches, each group of 64 announced by one message, as the gateway does."""
    token_enc = TokenCipher(Settings(token_encryption_key=KEY).token_encryption_key).encrypt("sandbox-token")
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    pool = await db.create_pool(dsn)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await broker.declare(channel, broker.Topology(prefix))
        for start in range(0, n, PER_MESSAGE):
            group = []
            for i in range(start, min(n, start + PER_MESSAGE)):
                batch_id = uuid.uuid4()
                record = (
                    batch_id,
                    0,
                    "CLIENT_ID",
                    str(10**18 + i),
                    "purchase",
                    when,
                    None,
                    None,
                    None,
                    "pending",
                    None,
                )
                group.append(
                    batches.NewBatch(batch_id, "single", None, None, counter, token_enc, "pending", [record])
                )
            message = {"batch_ids": [str(b.id) for b in group]}
            await batches.store(pool, group, broker.CONVERSION_UPLOADS, message)
            await broker.publish(exchange, broker.CONVERSION_UPLOADS, message)
    finally:
        await connection.close()
        await pool.close()


async def drain(dsn: str, prefix: str, api: str, n: int, uploaders: int) -> float:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "AMQP_URL": AMQP_URL,
        "QUEUE_PREFIX": prefix,
        "METRIKA_API_URL": api,
        "TOKEN_ENCRYPTION_KEY": KEY,
        "API_KEYS": "unused",
        "METRIKA_SCORE_ENV": "development",
        "UPLOAD_POLL_S": "1",
        "RETRY_BASE_S": "1",
        "RETRY_MAX_S": "30",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "uploader"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for _ in range(uploaders)
    ]
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            left = await conn.fetchval(
                "SELECT count(*) FROM batches WHERE status NOT IN ('completed', 'error')"
            )
            if left == 0:
                break
            if sys.stdout.isatty():
                print(
                    f"  {n - left}/{n} final after {time.perf_counter() - started:.0f} s",
                    end="\r",
                    flush=True,
                )
            await asyncio.sleep(1)
        elapsed = time.perf_counter() - started
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM batches GROUP BY status"))
        print(f"  uploader: {statuses} in {elapsed:.1f} s" + " " * 20)
        reasons = await conn.fetch(
            "SELECT left(reason, 200) AS reason, count(*) FROM conversions WHERE status = 'error' "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 3"
        )
        for reason, count in reasons:
            print(f"  {count} rows failed: {reason}")
        return elapsed
    finally:
        await conn.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


async def floor(api: str, n: int, counter: int) -> float:
    base = f"{api}/management/v1/counter/{counter}"
    headers = {"Authorization": "OAuth sandbox-token"}
    when = int(time.time()) - 3600
    slots = asyncio.Semaphore(3)

    async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> dict:
        while True:
            async with slots, session.request(method, url, headers=headers, **kwargs) as resp:
                if resp.status != 429:
                    resp.raise_for_status()
                    return dict(await resp.json())
            await asyncio.sleep(0.2)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        form = aiohttp.FormData()
        form.add_field(
            "file", f"ClientId,Target,DateTime\n{10**18 + i},purchase,{when}\n".encode(), filename="c.csv"
        )
        up = await call(
            session, "POST", f"{base}/offline_conversions/upload?client_id_type=CLIENT_ID", data=form
        )
        while (await call(session, "GET", f"{base}/offline_conversions/uploading/{up['uploading']['id']}"))[
            "uploading"
        ]["status"] not in ("PROCESSED", "LINKAGE_FAILURE"):
            await asyncio.sleep(1)

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i) for i in range(n)))
    elapsed = time.perf_counter() - started
    print(f"  bare client: {n} uploads in {elapsed:.1f} s")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--uploaders", type=int, default=2)
    args = parser.parse_args()
    name = f"metrika_bench_drain_{os.getpid()}"
    dsn = f"{PG_ROOT}/{name}"
    prefix = f"bench.drain.{os.getpid()}"
    port = free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--conversion-processing-seconds", "0"],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http(session, f"{api}/sandbox/faults")
        await db.ensure_database(dsn)
        async with aiohttp.ClientSession() as session:  # every visitor known: each conversion links
            for counter in (4242, 4343):
                ids = [str(10**18 + i) for i in range(args.batches)]
                await session.post(f"{api}/sandbox/clients", json={"counter": counter, "client_ids": ids})
        await store_backlog(dsn, prefix, args.batches, counter=4242)
        print(f"{args.batches} single-conversion batches, {args.uploaders} uploader(s)")
        ours = await drain(dsn, prefix, api, args.batches, args.uploaders)
        bare = await floor(api, args.batches, counter=4343)
        print(
            f"drain: {args.batches / ours:.1f} batches/s; floor {args.batches / bare:.1f}/s; "
            f"ratio {bare / ours:.2f}"
        )
    finally:
        sandbox.terminate()
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
