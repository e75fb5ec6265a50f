"""POST /conversions/bulk on a 120,000-visit task, and the gateway's other requests meanwhile, in one run.

    python bench/bulk.py [--visits 120000] [--rounds 3] [--rate 200]

A gateway process on PostgreSQL and RabbitMQ (make services), its own database. A completed task with
`--visits` level-4+ visits is put straight into that database (task row + COPY of task_visits). This
process then offers an open-loop load of other requests (`--rate` a second, alternating GET
/tasks/{id}/status and POST /conversions/single) and, in each round, after a second of it, creates
one bulk upload of the task (a new target each round, so every round stores all the visits) and times
that request. The others' latency is reported twice: for the requests that overlapped the bulk
creation ("during"), and over the same load without any bulk creation ("without", measured first, in
the same run). Where the rows are made by the uploader (shared.db.bulk.expand, one INSERT ... SELECT),
this process makes them right after the answer, as the uploader would, and "during" covers that too: the
other requests then share PostgreSQL with the 120k-row insert. No upload is sent to Metrika.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import AMQP_URL, PG_ROOT, drop, free_port, wait_http  # noqa: E402
from shared import db  # noqa: E402
from shared.crypto import TokenCipher  # noqa: E402
from shared.db import tasks  # noqa: E402
from shared.settings import Settings  # noqa: E402

API_KEY = "bench-bulk-key"
KEY = "bench-bulk-token-key"
COUNTER = 6161
CREATED_TARGET_S = 0.2
OTHERS_P99_TARGET_MS = 50.0


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def _task(pool: asyncpg.Pool, visits: int) -> uuid.UUID:
    """A completed task of `visits` level-4+ visits of a recent day, stored as the scorer stores them."""
    day = dt.date.today() - dt.timedelta(days=2)
    token_enc = TokenCipher(Settings(token_encryption_key=KEY).token_encryption_key).encrypt("sandbox-token")
    task_id = uuid.uuid4()
    await tasks.insert(pool, task_id, day, COUNTER, token_enc)
    start = dt.datetime.combine(day, dt.time())
    rows = [
        (
            task_id,
            i,
            str(2**63 + i),
            str(10**18 + i * 7919),
            start + dt.timedelta(seconds=i * 86_400 // visits),
            60 + i % 600,
            0.9,
            "bench",
            "desktop",
        )
        for i in range(visits)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table("task_visits", records=rows, columns=tasks.VISIT_COLUMNS)
        await conn.execute(
            "UPDATE tasks SET status = 'completed', progress = 100, total_visits = $2 WHERE id = $1",
            task_id,
            visits,
        )
        await conn.execute("ANALYZE task_visits")
    return task_id


async def _others(
    session: aiohttp.ClientSession, gateway: str, task_id: uuid.UUID, rate: int, seconds: float
) -> list[tuple[float, float]]:
    """Open loop at `rate`/s for `seconds`: (start, end) of every request, perf_counter seconds."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    spans: list[tuple[float, float]] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        if i % 2:
            body = {
                "user_id": f"u{uuid.uuid4().hex}",
                "target": "purchase",
                "date_time": when,
                "counter": COUNTER,
                "token": "sandbox-token",
            }
            request = session.post(f"{gateway}/conversions/single", json=body, headers=auth)
        else:
            request = session.get(f"{gateway}/tasks/{task_id}/status", headers=auth)
        async with request as resp:
            await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
        spans.append((started, time.perf_counter()))

    began = time.perf_counter()
    sent = []
    for i in range(int(rate * seconds)):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(asyncio.create_task(one(i)))
    await asyncio.gather(*sent)
    return spans


async def _bulk(
    session: aiohttp.ClientSession,
    gateway: str,
    pool: asyncpg.Pool,
    task_id: uuid.UUID,
    target: str,
    after_s: float,
) -> tuple[float, float, float | None]:
    """(start, answered, rows made) in perf_counter seconds; rows made is None where the request made them."""
    await asyncio.sleep(after_s)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    started = time.perf_counter()
    async with session.post(
        f"{gateway}/conversions/bulk", json={"task_id": str(task_id), "target": target}, headers=auth
    ) as resp:
        answer = await resp.json()
        if resp.status >= 300:
            raise RuntimeError(f"bulk: HTTP {resp.status}: {answer}")
    answered = time.perf_counter()
    try:
        from shared.db import bulk
    except ImportError:  # the code before bulk uploads in SQL: the request stored the rows
        return started, answered, None
    await bulk.expand(pool, uuid.UUID(answer["upload_id"]))  # what the uploader does when it takes it
    return started, answered, time.perf_counter()


async def run(args: argparse.Namespace) -> tuple[list[float], list[float], list[float]]:
    name = f"metrika_bench_bulk_{os.getpid()}"
    dsn, prefix = f"{PG_ROOT}/{name}", f"bench.bulk.{os.getpid()}"
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": dsn,
        "AMQP_URL": AMQP_URL,
        "QUEUE_PREFIX": prefix,
        "TOKEN_ENCRYPTION_KEY": KEY,
        "API_KEYS": API_KEY,
        "METRIKA_SCORE_ENV": "development",
        "PORT": str(port),
        "API_RATE_PER_MINUTE": "10000000",
        "LOG_LEVEL": "WARNING",
    }
    await db.ensure_database(dsn)
    pool = await db.create_pool(dsn, max_size=2)
    created: list[float] = []
    during: list[float] = []
    without: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        with (Path(tmp) / "gateway.log").open("wb") as out:
            gw = subprocess.Popen(
                [sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            task_id = await _task(pool, args.visits)
            spy = None
            if args.py_spy:  # the gateway's stacks over the measured rounds (README "Performance")
                duration = str(int(args.rounds * 2 * args.seconds + 10))
                spy = subprocess.Popen(
                    [args.py_spy, "record", "--pid", str(gw.pid), "--format", "raw", "--rate", "100",
                     "--nonblocking", "-o", args.profile_out, "--duration", duration],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                await wait_http(session, f"{gateway}/health")
                await _others(session, gateway, task_id, args.rate, 2.0)  # warm-up
                for r in range(args.rounds):
                    spans = await _others(session, gateway, task_id, args.rate, args.seconds)
                    without += [(end - start) * 1000 for start, end in spans]
                    spans, (b_start, b_answered, b_made) = await asyncio.gather(
                        _others(session, gateway, task_id, args.rate, args.seconds),
                        _bulk(session, gateway, pool, task_id, f"bulk{r}", 1.0),
                    )
                    created.append(b_answered - b_start)
                    b_end = b_answered if b_made is None else b_made
                    overlapping = [(s, e) for s, e in spans if s < b_end and e > b_start]
                    these = [(end - start) * 1000 for start, end in overlapping]
                    during += these
                    made = (
                        ""
                        if b_made is None
                        else f", rows made by the uploader in {b_made - b_answered:.3f} s"
                    )
                    print(
                        f"round {r + 1}: bulk created in {created[-1]:.3f} s{made};"
                        f" {len(overlapping)} other requests overlapped it, p99 {_pct(these, 99):.1f} ms",
                        flush=True,
                    )
            if spy is not None:
                spy.wait(timeout=120)
        finally:
            gw.terminate()
            gw.wait(timeout=30)
            await pool.close()
            await drop(name, prefix)
    return created, during, without


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=120_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=200, help="other requests a second")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each load window")
    parser.add_argument("--py-spy", help="path of py-spy: record the gateway during the rounds")
    parser.add_argument("--profile-out", default="bulk-gateway.txt", help="py-spy's collapsed stacks")
    args = parser.parse_args(argv)
    created, during, without = asyncio.run(run(args))
    median_created = statistics.median(created)
    p99_during = _pct(during, 99)
    ok_created, ok_others = median_created < CREATED_TARGET_S, p99_during < OTHERS_P99_TARGET_MS
    print(
        f"bulk upload of {args.visits:,} visits created in {median_created:.3f} s (median of"
        f" {', '.join(f'{c:.3f}' for c in created)}; target < {CREATED_TARGET_S} s:"
        f" {'met' if ok_created else 'NOT MET'})"
    )
    print(
        f"other requests without a bulk creation: p50 {_pct(without, 50):.1f} ms,"
        f" p99 {_pct(without, 99):.1f} ms ({len(without)} requests)"
    )
    print(
        f"other requests during the bulk creations: p50 {_pct(during, 50):.1f} ms, p99 {p99_during:.1f} ms"
        f" ({len(during)} requests; target p99 < {OTHERS_P99_TARGET_MS:.0f} ms:"
        f" {'met' if ok_others else 'NOT MET'})"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return 0 if ok_created and ok_others else 1


if __name__ == "__main__":
    sys.exit(main())
