"""1 vs 2 scorer processes on a queue of 8 day tasks, in one run (issue 12's scaling figure).

    python bench/scorers.py [--tasks 8] [--visits 50000] [--preparation-s 10]

All real processes on loopback: a sandbox (`python -m sandbox`) whose Logs API takes `--preparation-s`
to prepare a log request (Yandex takes seconds to hours), PostgreSQL and RabbitMQ (make services), and
the scorers (`python -m scorer`, defaults: PREFETCH_COUNT 2, one scoring thread each). Each phase
publishes `--tasks` tasks at once (one day of a different counter each, its own token: Yandex's 3
parallel Logs API requests are per user) and times them until every row is `completed`: tasks per
minute. The Logs API's 10 requests/s are per IP, so with 2 scorers on one host each paces at
LOGS_API_RPS=5 (README "Deployment"). Phase 2 uses other counters, so nothing the sandbox prepared
or simulated for phase 1 is reused; the sandbox simulates each day before the timed part.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.e2e import wait_consumers  # noqa: E402
from bench.ingest import AMQP_URL, PG_ROOT, drop, free_port, wait_http  # noqa: E402
from shared import broker, db  # noqa: E402
from shared.crypto import TokenCipher  # noqa: E402
from shared.db import tasks  # noqa: E402
from shared.schemas import ScoreTask  # noqa: E402
from shared.settings import Settings  # noqa: E402

KEY = "bench-scorers-key"
RATIO_TARGET = 1.7


def _day() -> dt.date:
    return dt.date.today() - dt.timedelta(days=2)  # the sandbox serves past days only


async def _warm(api: str, counter: int, token: str, day: dt.date) -> None:
    """The sandbox simulates the counter's day (its own CPU, not the scorers'): ask for an evaluation."""
    url = f"{api}/management/v1/counter/{counter}/logrequests/evaluate"
    params = {
        "date1": day.isoformat(),
        "date2": day.isoformat(),
        "source": "visits",
        "fields": "ym:s:visitID",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=params, headers={"Authorization": f"OAuth {token}"}) as resp,
    ):
        await resp.read()


async def _phase(
    pool: asyncpg.Pool,
    exchange: aio_pika.abc.AbstractExchange,
    env: dict[str, str],
    log: Path,
    scorers: int,
    counters: list[int],
    tokens: list[str],
    api: str,
) -> tuple[float, dict[str, int]]:
    day = _day()
    for counter, token in zip(counters, tokens, strict=True):
        await _warm(api, counter, token, day)
    rps = str(max(1, 10 // scorers))  # Yandex's 10 Logs API requests/s per IP, shared by the host's scorers
    with log.open("ab") as out:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "scorer"],
                cwd=ROOT,
                env={**env, "LOGS_API_RPS": rps, "WORK_DIR": f"{env['WORK_DIR']}/{scorers}-{i}"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            for i in range(scorers)
        ]
    try:
        await wait_consumers(env["QUEUE_PREFIX"], broker.SCORE_TASKS, procs, log)
        cipher = TokenCipher(Settings(token_encryption_key=KEY).token_encryption_key)
        ids = []
        for counter, token in zip(counters, tokens, strict=True):
            task_id = uuid.uuid4()
            await tasks.insert(pool, task_id, day, counter, cipher.encrypt(token))
            ids.append(task_id)
        started = time.perf_counter()
        for task_id in ids:
            await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=task_id))
        while True:
            rows = await pool.fetch("SELECT status, count(*) FROM tasks WHERE id = ANY($1) GROUP BY 1", ids)
            statuses = {r["status"]: r["count"] for r in rows}
            if statuses.get("completed", 0) + statuses.get("failed", 0) == len(ids):
                return time.perf_counter() - started, statuses
            await asyncio.sleep(0.1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


async def run(args: argparse.Namespace) -> dict[int, float]:
    name = f"metrika_bench_scorers_{os.getpid()}"
    dsn, prefix = f"{PG_ROOT}/{name}", f"bench.scorers.{os.getpid()}"
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    tokens = [f"bench-scorer-token-{i}" for i in range(args.tasks)]
    per_minute: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scorers-") as tmp_name:
        tmp = Path(args.logs or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": dsn,
            "AMQP_URL": AMQP_URL,
            "QUEUE_PREFIX": prefix,
            "METRIKA_API_URL": api,
            "TOKEN_ENCRYPTION_KEY": KEY,
            "API_KEYS": "unused",
            "METRIKA_SCORE_ENV": "development",
            "WORK_DIR": str(tmp / "work"),
            "METRICS_PORT": "0",
            "LOG_LEVEL": "WARNING",
        }
        sandbox_args = ["--port", str(port), "--processing-seconds", str(args.preparation_s)]
        sandbox_args += ["--visits-per-day", str(args.visits)]
        for token in tokens:
            sandbox_args += ["--token", token]
        with (tmp / "sandbox.log").open("ab") as out:
            sandbox = subprocess.Popen(
                [sys.executable, "-m", "sandbox", *sandbox_args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        await db.ensure_database(dsn)
        pool = await db.create_pool(dsn, max_size=2)
        connection = await broker.connect(AMQP_URL, name="bench scorers")
        topology = broker.Topology(prefix)
        try:
            async with aiohttp.ClientSession() as session:
                await wait_http(session, f"{api}/sandbox/faults")
            exchange = await broker.declare(await connection.channel(), topology)
            for phase, scorers in enumerate(args.order):
                counters = [8000 + 100 * phase + i for i in range(args.tasks)]
                seconds, statuses = await _phase(
                    pool, exchange, env, tmp / "scorer.log", scorers, counters, tokens, api
                )
                per_minute[scorers] = args.tasks / seconds * 60
                print(
                    f"{scorers} scorer(s): {args.tasks} tasks in {seconds:.1f} s ({statuses}),"
                    f" {per_minute[scorers]:.1f} tasks/min",
                    flush=True,
                )
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
            await connection.close()
            await pool.close()
            await drop(name, prefix)
    return per_minute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--visits", type=int, default=50_000, help="visits a day of each counter")
    parser.add_argument("--preparation-s", type=float, default=10.0, help="the Logs API's preparation time")
    parser.add_argument("--order", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--logs", help="keep the processes' logs in this directory")
    args = parser.parse_args(argv)
    per_minute = asyncio.run(run(args))
    ratio = per_minute[2] / per_minute[1]
    met = ratio >= RATIO_TARGET
    print(f"2 scorers / 1: {ratio:.2f}x (target >= {RATIO_TARGET}x: {'met' if met else 'NOT MET'})")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
