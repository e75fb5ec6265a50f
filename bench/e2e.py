"""Webhook accepted -> Metrika (the sandbox) has the conversion PROCESSED, under a fixed offered load, with 1
and with 2 uploader processes, in one run (issue 12's scaling figures).

    python bench/e2e.py [--seconds 20] [--rate 1000] [--per-request 100] [--latency-per-request 10]

All real processes on loopback: a sandbox (`python -m sandbox`, conversion processing delay 0), one
gateway, `n` uploaders (`python -m uploader`), PostgreSQL and RabbitMQ (make services). This process
offers an open-loop load (requests sent on a fixed schedule, whatever the answers' pace) to webhooks
(POST /webhook/offline-conversions/{id}), for `--seconds`, then waits until every conversion reached the
sandbox.

Latency is per conversion: from the webhook's answer (accepted, committed) at the load generator to the
sandbox's receipt of the upload that carried it (`received` in GET /sandbox/conversions). With processing
delay 0 an upload is PROCESSED the moment it is received (the uploader's status poll, every UPLOAD_POLL_S,
only records that later; batch completion is reported as a count). Throughput: conversions the sandbox
received within the `--seconds` of load (the offered rate, unless the uploaders cannot keep up); then
`--drain-s` for the rest, whose latency counts too; what is still not uploaded is removed before the
next phase.

Two configurations:
  quota:    1 then 2 uploaders; Yandex's quotas on (30 Management API calls/s per IP, 3 in flight per
            token), no added latency: `--rate` conversions/s in requests of `--per-request` (default
            1000/s = 10 x 100).
  latency:  phases of 1, 2, 2, 1 uploaders (`--latency-order`; the medians compared, against drift);
            every Management API call of the sandbox takes 200 ms more, the per-IP quota is off
            (replicas on their own IPs) and `--counters` (32) counters have their own tokens (3 calls
            in flight per token each); the same rate in requests of `--latency-per-request` (100/s x
            10): uploads wait on Metrika, and the second uploader should nearly double the throughput
            (target >= 1.6x).
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
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import AMQP_URL, PG_ROOT, drop, free_port, wait_http  # noqa: E402
from shared import broker, db  # noqa: E402

API_KEY = "bench-e2e-key"
KEY = "bench-e2e-token-key"
LATENCY_S = 0.2
P99_TARGET_S = 2.0
RATIO_TARGET = 1.6


@dataclass
class Phase:
    config: str
    uploaders: int
    offered: int = 0  # conversions
    received: int = 0
    throughput: float = 0.0  # conversions/s
    p50: float = 0.0
    p99: float = 0.0
    completed_batches: int = 0
    batches: int = 0
    load_s: float = 0.0


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def _start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_consumers(
    prefix: str, routing_key: str, procs: list[subprocess.Popen[bytes]], log: Path, timeout: float = 60
) -> None:
    """Until the queue has a consumer per process (they log at WARNING only)."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args!r} exited: {log.read_text()[-2000:]}")
            try:
                queue = await channel.declare_queue(broker.Topology(prefix).queue(routing_key), passive=True)
                if (queue.declaration_result.consumer_count or 0) >= len(procs):
                    return
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()  # not declared yet
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    raise RuntimeError(f"{len(procs)} consumers of {routing_key} not there within {timeout}s")


async def _load(
    session: aiohttp.ClientSession,
    hooks: list[tuple[str, str]],
    tag: str,
    rate: int,
    per_request: int,
    seconds: float,
) -> tuple[dict[str, float], float]:
    """Open loop: request i leaves at start + i / (rate / per_request). ({user_id: accepted at}, span)."""
    accepted: dict[str, float] = {}
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    n_requests = int(seconds * rate / per_request)
    failures: list[str] = []

    async def one(i: int) -> None:
        url, secret = hooks[i % len(hooks)]
        ids = [f"{tag}r{i}c{j}" for j in range(per_request)]
        body = {
            "conversions": [
                {"user_id": uid, "target": "purchase", "date_time": when, "price": 10, "currency": "RUB"}
                for uid in ids
            ]
        }
        async with session.post(url, json=body, headers={"X-Webhook-Secret": secret}) as resp:
            await resp.read()
            if resp.status != 200:
                failures.append(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                return
        now = time.time()
        for uid in ids:
            accepted[uid] = now

    started = time.perf_counter()
    interval = per_request / rate
    sent: list[asyncio.Task[None]] = []
    for i in range(n_requests):
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(asyncio.create_task(one(i)))
    await asyncio.gather(*sent)
    if failures:
        raise RuntimeError(f"{len(failures)} webhook requests failed, e.g. {failures[0]}")
    return accepted, time.perf_counter() - started


async def _received(session: aiohttp.ClientSession, api: str, tag: str) -> dict[str, float]:
    async with session.get(f"{api}/sandbox/conversions") as resp:
        lines = (await resp.json())["lines"]
    got: dict[str, float] = {}
    for line in lines:
        uid = line["row"].get("UserId", "")
        if uid.startswith(tag):
            got.setdefault(uid, line["received"])
    return got


async def _phase(
    session: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    api: str,
    hooks: list[tuple[str, str]],
    env: dict[str, str],
    log: Path,
    phase: Phase,
    rate: int,
    per_request: int,
    seconds: float,
    args_drain_s: float,
    py_spy: str | None = None,
    py_spy_out: str = "",
) -> None:
    procs = [_start("uploader", env, log) for _ in range(phase.uploaders)]
    try:
        await wait_consumers(env["QUEUE_PREFIX"], broker.CONVERSION_UPLOADS, procs, log)
        spy = None
        if py_spy:  # the first uploader's stacks while the load is offered (README "Performance")
            out = f"{py_spy_out}-{phase.config}-{phase.uploaders}.txt"
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(procs[0].pid), "--format", "raw", "--rate", "100",
                 "--nonblocking", "-o", out, "--duration", str(int(seconds))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        tag = f"{phase.config[0]}{phase.uploaders}x{uuid.uuid4().hex[:4]}"
        accepted, phase.load_s = await _load(session, hooks, tag, rate, per_request, seconds)
        phase.offered = len(accepted)
        deadline = time.monotonic() + args_drain_s
        while True:
            received = await _received(session, api, tag)
            if len(received) >= len(accepted) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        if spy is not None:
            spy.wait(timeout=60)
        # batches become `completed` once the uploader's poll has seen PROCESSED (UPLOAD_POLL_S)
        await asyncio.sleep(3)
        phase.batches, phase.completed_batches = await pool.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE b.status = 'completed') FROM batches b"
            " WHERE EXISTS (SELECT 1 FROM conversions c WHERE c.batch_id = b.id AND c.identifier LIKE $1)",
            f"{tag}%",
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    # an overloaded phase leaves work behind: never let the next phase's uploaders see it
    await pool.execute(
        "DELETE FROM batches b WHERE b.status <> 'completed' AND EXISTS"
        " (SELECT 1 FROM conversions c WHERE c.batch_id = b.id AND c.identifier LIKE $1)",
        f"{tag}%",
    )
    await purge(env["QUEUE_PREFIX"])
    phase.received = len(received)
    latencies = [received[uid] - accepted[uid] for uid in received if uid in accepted]
    if latencies:
        phase.p50, phase.p99 = _pct(latencies, 50), _pct(latencies, 99)
        # capacity: what reached Metrika while the load was offered (all of it, unless overloaded)
        first = min(accepted.values())
        phase.throughput = sum(1 for t in received.values() if t <= first + phase.load_s) / phase.load_s


async def run(args: argparse.Namespace) -> list[Phase]:
    name = f"metrika_bench_e2e_{os.getpid()}"
    dsn, prefix = f"{PG_ROOT}/{name}", f"bench.e2e.{os.getpid()}"
    sandbox_port, gateway_port = free_port(), free_port()
    api, gateway = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{gateway_port}"
    tokens = [f"bench-token-{i}" for i in range(args.counters)]
    phases: list[Phase] = []
    procs: list[subprocess.Popen[bytes]] = []
    await db.ensure_database(dsn)
    pool = await db.create_pool(dsn, max_size=2)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name:
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
            "API_KEYS": API_KEY,
            "METRIKA_SCORE_ENV": "development",
            "PORT": str(gateway_port),
            "WEBHOOK_RATE_PER_MINUTE": "10000000",
            "API_RATE_PER_MINUTE": "10000000",
            "UPLOAD_POLL_S": "1",
            "RETRY_BASE_S": "1",
            "METRICS_PORT": "0",  # two uploaders on one host
            "PREFETCH_COUNT": str(args.prefetch),
            "LOG_LEVEL": "WARNING",
        }
        sandbox_args = ["--port", str(sandbox_port), "--conversion-processing-seconds", "0"]
        for token in tokens:
            sandbox_args += ["--token", token]

        def sandbox(extra: list[str]) -> subprocess.Popen[bytes]:
            with (tmp / "sandbox.log").open("ab") as out:
                return subprocess.Popen(
                    [sys.executable, "-m", "sandbox", *sandbox_args, *extra],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                gw = _start("gateway", env, tmp / "gateway.log")
                procs.append(gw)
                auth = {"Authorization": f"Bearer {API_KEY}"}
                await wait_http(session, f"{gateway}/health")
                hooks: list[tuple[str, str]] = []
                for i, token in enumerate(tokens):
                    async with session.post(
                        f"{gateway}/webhook/offline-conversions",
                        headers=auth,
                        json={"name": f"bench{i}", "counter_id": 7100 + i, "token": token},
                    ) as resp:
                        hook = await resp.json()
                    hooks.append(
                        (f"{gateway}/webhook/offline-conversions/{hook['webhook_id']}", hook["secret"])
                    )
                configs = [
                    ("quota", [], hooks[:1], args.per_request),
                    ("latency", ["--management-rps", "0"], hooks, args.latency_per_request),
                ]
                configs = [c for c in configs if c[0] in args.configs.split(",")]
                for config, extra, used, per_request in configs:
                    sb = sandbox(extra)
                    try:
                        await wait_http(session, f"{api}/sandbox/faults")
                        if config == "latency":
                            fault = {"path": "^/management/", "delay": LATENCY_S, "times": None}
                            async with session.post(f"{api}/sandbox/faults", json=fault) as resp:
                                assert resp.status == 201, await resp.text()
                        order = [1, 2] if config == "quota" else args.latency_order
                        for uploaders in order:
                            phase = Phase(config, uploaders)
                            await _phase(
                                session, pool, api, used, env, tmp / "uploader.log", phase,
                                args.rate, per_request, args.seconds, args.drain_s,
                                args.py_spy, args.profile_out,
                            )  # fmt: skip
                            phases.append(phase)
                            _print(phase)
                    finally:
                        sb.terminate()
                        sb.wait(timeout=30)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
            await pool.close()
            await drop(name, prefix)
    return phases


async def purge(prefix: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            broker.Topology(prefix).queue(broker.CONVERSION_UPLOADS), passive=True
        )
        await queue.purge()
    finally:
        await connection.close()


def _print(p: Phase) -> None:
    print(
        f"{p.config:8s} {p.uploaders} uploader(s): offered {p.offered:,} conversions in {p.load_s:.1f} s,"
        f" received {p.received:,}; {p.throughput:,.0f} conversions/s during the load;"
        f" latency p50 {p.p50:.2f} s,"
        f" p99 {p.p99:.2f} s; batches completed {p.completed_batches}/{p.batches}",
        flush=True,
    )


def _summary(phases: list[Phase], args: argparse.Namespace) -> bool:
    ok = True
    by = {(p.config, p.uploaders): p for p in phases}
    for uploaders in (1, 2) if ("quota", 1) in by else ():
        p = by[("quota", uploaders)]
        met = p.p99 < P99_TARGET_S and p.received == p.offered
        ok &= met
        print(
            f"quota, {uploaders} uploader(s), {args.rate}/s offered: p99 {p.p99:.2f} s"
            f" (target < {P99_TARGET_S:.0f} s: {'met' if met else 'NOT MET'})"
        )
    if ("latency", 1) not in by:
        return ok

    def median(n: int) -> float:
        return statistics.median(p.throughput for p in phases if p.config == "latency" and p.uploaders == n)

    one, two = median(1), median(2)
    ratio = two / one if one else 0.0
    ok &= ratio >= RATIO_TARGET
    print(
        f"latency {LATENCY_S * 1000:.0f} ms/call: 2 uploaders {two:.0f}/s, 1 uploader {one:.0f}/s"
        f" (medians of phases {args.latency_order}): {ratio:.2f}x"
        f" (target >= {RATIO_TARGET}x: {'met' if ratio >= RATIO_TARGET else 'NOT MET'})"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the load is offered")
    parser.add_argument("--rate", type=int, default=1000, help="conversions offered per second")
    parser.add_argument(
        "--per-request", type=int, default=100, help="conversions per webhook request (quota)"
    )
    parser.add_argument(
        "--latency-per-request", type=int, default=10, help="conversions per webhook request (latency)"
    )
    parser.add_argument(
        "--counters", type=int, default=32, help="counters, each with its own token (latency configuration)"
    )
    parser.add_argument(
        "--drain-s", type=float, default=30.0, help="how long to wait after the load for what is left"
    )
    parser.add_argument(
        "--latency-order",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2, 2, 1],
        help="uploader counts of the latency configuration's phases, in order (alternated against drift)",
    )
    parser.add_argument("--py-spy", help="path of py-spy: record the first uploader of each phase")
    parser.add_argument("--profile-out", default="e2e-uploader", help="py-spy's collapsed stacks (prefix)")
    parser.add_argument("--prefetch", type=int, default=2, help="the uploaders' PREFETCH_COUNT")
    parser.add_argument("--configs", default="quota,latency", help="which configurations to run")
    parser.add_argument("--logs", help="keep the processes' logs in this directory")
    args = parser.parse_args(argv)
    phases = asyncio.run(run(args))
    return 0 if _summary(phases, args) else 1


if __name__ == "__main__":
    sys.exit(main())
