"""The scorer service on a large day, end to end, next to the CLI on the same day (issue 10's service target).

    python bench/scoring.py --service [--visits 1000000] [--rounds 1]
    python bench/service.py [--visits 1000000] [--rounds 1]

0. Store (Postgres only): 120,000 scored visits (about what a 1M-visit day yields) stored and the task
   completed, the scorer's way (scorer.results: CSV chunks written in the executor, streamed to COPY)
   next to the way before issue 10 (tuples built in the executor, then asyncpg encoding every record on
   the event loop), alternating; with the longest pause of the event loop while each runs.

All real processes on loopback: a sandbox (`python -m sandbox`, processing delay 0) serving one N-visit
day, PostgreSQL and RabbitMQ (make services), a scorer process (`python -m scorer`) consuming its queue.

1. Warm-up (not timed): the sandbox simulates the day and prepares its parts once (a log request of
   each source, downloaded into a directory: the files the CLI reads below). Yandex's preparation time
   is not ours: with processing delay 0 a task then meets prepared logs, as a re-run of a day does.
2. Download, timed: the Logs API client alone fetches both sources again (the floor of the service's
   download).
3. CLI on files: `python -m scorer.cli score --logs-dir` on the warm-up's files, as a whole process.
4. Service: a task row and its ScoreTask message published to the queue; time until the row is
   `completed`, with the stages read off the task's progress messages (polled every 20 ms).
5. CLI on the API: `python -m scorer.cli score` against the same sandbox, as a whole process.

Prints each figure, the stage profile of the service, and the ratio service / CLI on files against
its target (<= 3x). The service's stored visits must equal the CLI's output, visit for visit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from bench.ingest import AMQP_URL, PG_ROOT, drop, free_port, wait_http  # noqa: E402
from scorer import results, tsv  # noqa: E402
from scorer.logs_api import LogsApiClient  # noqa: E402
from shared import broker, db  # noqa: E402
from shared.crypto import TokenCipher  # noqa: E402
from shared.db import tasks  # noqa: E402
from shared.schemas import ScoreTask  # noqa: E402
from shared.settings import Settings  # noqa: E402

KEY = "bench-service-key"
TOKEN = "sandbox-token"
COUNTER = 5151
TARGET_SERVICE_RATIO = 3.0


@dataclass
class Round:
    cli_files_s: float = 0.0
    service_s: float = 0.0
    cli_api_s: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


def _day() -> dt.date:
    return dt.date.today() - dt.timedelta(days=2)  # the sandbox serves past days only


def _env(dsn: str, prefix: str, api: str, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout, whatever the venv has installed
        "DATABASE_URL": dsn,
        "AMQP_URL": AMQP_URL,
        "QUEUE_PREFIX": prefix,
        "METRIKA_API_URL": api,
        "TOKEN_ENCRYPTION_KEY": KEY,
        "API_KEYS": "unused",
        "METRIKA_SCORE_ENV": "development",
        "WORK_DIR": str(work),
    }


async def _download(api: str, day: dt.date, dest: Path) -> float:
    """Both sources side by side with the scorer's own client, as the service downloads them."""
    settings = Settings(metrika_api_url=api, logs_poll_initial_s=0.2)
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=300)) as session:
        client = LogsApiClient(session, settings, TOKEN, COUNTER)
        await asyncio.gather(
            client.download(day, "visits", list(tsv.VISIT_FIELDS), dest),
            client.download(day, "hits", list(tsv.HIT_FIELDS), dest),
        )
    return time.perf_counter() - started


def _cli(args: list[str], env: dict[str, str], out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "scorer.cli", "score", *args, "--out", str(out)],
        cwd=out.parent,
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


# the stage a progress message (scorer.progress) starts; "read" begins once both downloads are at 100%
_STAGE = re.compile(r"^(evaluate|prepare|download|features|scoring|store)\b")
DOWNLOAD_DONE = 60  # scorer.progress.STAGES["download"][1]


async def _service(
    pool: asyncpg.Pool, exchange: Any, day: dt.date, token_enc: bytes
) -> tuple[float, dict[str, float], uuid.UUID]:
    """Publish one task, wait for `completed`; (seconds, seconds spent in each stage, the task's id)."""
    task_id = uuid.uuid4()
    await tasks.insert(pool, task_id, day, COUNTER, token_enc)
    started = time.perf_counter()
    await broker.publish(exchange, broker.SCORE_TASKS, ScoreTask(task_id=task_id))
    marks: list[tuple[str, float]] = [("queued", 0.0)]
    while True:
        row = await pool.fetchrow("SELECT status, progress, message FROM tasks WHERE id = $1", task_id)
        now = time.perf_counter() - started
        if row["status"] in ("completed", "failed"):
            if row["status"] != "completed":
                raise RuntimeError(f"task {task_id} {row['status']}: {row['message']}")
            marks.append(("end", now))
            break
        stage = marks[-1][0]
        if row["status"] == "running":
            found = _STAGE.match(row["message"] or "")
            stage = found.group(1) if found else ("claim" if stage == "queued" else stage)
            if stage == "download" and row["progress"] >= DOWNLOAD_DONE:
                stage = "read"
        if stage != marks[-1][0]:
            marks.append((stage, now))
        await asyncio.sleep(0.02)
    stages: dict[str, float] = {}
    for (stage, at), (_, until) in zip(marks, marks[1:], strict=False):
        stages[stage] = stages.get(stage, 0.0) + until - at
    return marks[-1][1], stages, task_id


async def _stored(pool: asyncpg.Pool, task_id: uuid.UUID) -> list[str]:
    """visitId of every stored visit of the task, in order."""
    return [r["visit_id"] for r in await tasks.all_visits(pool, task_id)]


def _wait_line(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited: {path.read_text()[-2000:]}")
        if re.search(pattern, path.read_text(errors="replace")):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {pattern!r} from {proc.args!r} within {timeout}s")


def _scored(n: int) -> pd.DataFrame:
    """n level-4+ visits as scoring.score_visits returns them (ids as text, 20 digits)."""
    rng = np.random.default_rng(0)
    starts = np.datetime64("2024-09-02T00:00:00") + np.sort(rng.integers(0, 86_400, n)).astype(
        "timedelta64[s]"
    )
    return pd.DataFrame(
        {
            "visitId": (np.uint64(2**63) + rng.permutation(n).astype(np.uint64)).astype(str),
            "clientId": (np.uint64(2**63) + rng.integers(0, 2**62, n).astype(np.uint64)).astype(str),
            "dateTime": pd.Series(np.datetime_as_string(starts, unit="s")).str.replace("T", " "),
            "visitDuration": rng.integers(0, 7200, n),
            "score": rng.random(n),
            "model_version": ["bench"] * n,
        }
    )


def _records(task_id: uuid.UUID, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The rows as the scorer built them before issue 10: one tuple of Python values per visit."""
    when = pd.to_datetime(frame["dateTime"], format="%Y-%m-%d %H:%M:%S").to_numpy().astype("datetime64[s]")
    n = len(frame)
    return list(
        zip(
            [task_id] * n,
            range(n),
            frame["visitId"].tolist(),
            frame["clientId"].tolist(),
            when.astype(object).tolist(),
            frame["visitDuration"].tolist(),
            frame["score"].tolist(),
            frame["model_version"].tolist(),
            strict=True,
        )
    )


async def _store_records(
    pool: asyncpg.Pool, executor: ThreadPoolExecutor, task_id: uuid.UUID, frame: pd.DataFrame
) -> None:
    rows = await asyncio.get_running_loop().run_in_executor(executor, _records, task_id, frame)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM task_visits WHERE task_id = $1", task_id)
        await conn.copy_records_to_table("task_visits", records=rows, columns=tasks.VISIT_COLUMNS)
        await conn.execute("UPDATE tasks SET status = 'completed' WHERE id = $1", task_id)


async def _store_streamed(
    pool: asyncpg.Pool, executor: ThreadPoolExecutor, task_id: uuid.UUID, frame: pd.DataFrame
) -> None:
    async def report(percent: int, message: str) -> None:
        await tasks.set_progress(pool, task_id, percent, message)

    await results.store(
        pool, task_id, frame, executor=executor, report=report, total_visits=len(frame), model_version="bench"
    )


async def _timed_with_stalls(
    store: Any, pool: asyncpg.Pool, executor: ThreadPoolExecutor, frame: pd.DataFrame
) -> tuple[float, float]:
    """(seconds to store, the event loop's longest pause meanwhile) of one store of a fresh running task."""
    task_id = uuid.uuid4()
    await tasks.insert(pool, task_id, _day(), COUNTER, b"bench")
    await tasks.claim(pool, task_id)
    pauses = [0.0]
    done = asyncio.Event()

    async def probe() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            pauses.append(now - last - 0.001)
            last = now

    probing = asyncio.create_task(probe())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await store(pool, executor, task_id, frame)
    elapsed = time.perf_counter() - started
    done.set()
    await probing
    return elapsed, max(pauses)


async def store_figures(dsn: str, rows: int = 120_000, rounds: int = 3) -> dict[str, float]:
    """Store `rows` visits both ways, alternating, `rounds` times each; prints and returns the medians."""
    frame = _scored(rows)
    pool = await db.create_pool(dsn, max_size=4)
    runs: dict[str, list[tuple[float, float]]] = {"streamed": [], "records": []}
    try:
        with ThreadPoolExecutor(max_workers=1) as executor:
            for i in range(rounds):
                order = [("streamed", _store_streamed), ("records", _store_records)]
                for name, store in order if i % 2 == 0 else order[::-1]:
                    runs[name].append(await _timed_with_stalls(store, pool, executor, frame))
    finally:
        await pool.close()
    figures = {}
    print(f"store {rows:,} visits and complete the task (one transaction), {rounds} rounds each, medians:")
    for name, label in (
        ("streamed", "CSV chunks off the loop (now)"),
        ("records", "records encoded on the loop (before)"),
    ):
        seconds = statistics.median(t for t, _ in runs[name])
        pause = statistics.median(p for _, p in runs[name])
        figures[f"{name}_s"], figures[f"{name}_pause_s"] = seconds, pause
        each = ", ".join(f"{t:.2f}" for t, _ in runs[name])
        print(f"  {label:38s} {seconds:6.2f} s [{each}], longest loop pause {pause * 1000:5.0f} ms")
    return figures


async def run(visits: int, rounds: int) -> dict[str, float]:
    """The bench; returns the medians (seconds) and the ratio."""
    name = f"metrika_bench_service_{os.getpid()}"
    dsn, prefix, day = f"{PG_ROOT}/{name}", f"bench.service.{os.getpid()}", _day()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp_name:
        tmp = Path(tmp_name)
        env = _env(dsn, prefix, api, tmp / "work")
        sandbox_log = tmp / "sandbox.log"
        with sandbox_log.open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "sandbox",
                        "--port",
                        str(port),
                        "--processing-seconds",
                        "0",
                        "--visits-per-day",
                        str(visits),
                    ],  # fmt: skip
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        connection: aio_pika.abc.AbstractRobustConnection | None = None
        pool: asyncpg.Pool | None = None
        try:
            async with aiohttp.ClientSession() as session:
                await wait_http(session, f"{api}/sandbox/faults")
            await db.ensure_database(dsn)
            store = await store_figures(dsn)
            pool = await db.create_pool(dsn, max_size=2)
            connection = await broker.connect(AMQP_URL, name="bench service")
            exchange = await broker.declare(await connection.channel(), broker.Topology(prefix))
            scorer_log = tmp / "scorer.log"
            with scorer_log.open("wb") as log:
                scorer = subprocess.Popen(
                    [sys.executable, "-m", "scorer"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            procs.append(scorer)

            files = tmp / "files"
            files.mkdir()
            started = time.perf_counter()
            await _download(api, day, files)  # the sandbox simulates the day and renders its parts
            warm_s = time.perf_counter() - started
            size_mb = sum(p.stat().st_size for p in files.glob("*.tsv")) / 1e6
            _wait_line(scorer_log, r"consuming ", scorer, timeout=120)
            download_s = await _download(api, day, tmp / "again")
            token_enc = TokenCipher(Settings(token_encryption_key=KEY).token_encryption_key).encrypt(TOKEN)

            runs: list[Round] = []
            for _ in range(rounds):
                one = Round()
                one.cli_files_s = _cli(
                    ["--date", day.isoformat(), "--logs-dir", str(files)], env, tmp / "files.json"
                )
                one.service_s, one.stages, task_id = await _service(pool, exchange, day, token_enc)
                one.cli_api_s = _cli(
                    [
                        "--date",
                        day.isoformat(),
                        "--counter",
                        str(COUNTER),
                        "--token",
                        TOKEN,
                        "--api-url",
                        api,
                    ],
                    env,
                    tmp / "api.json",
                )
                runs.append(one)
            stored = await _stored(pool, task_id)
            from_cli = [r["visitId"] for r in json.loads((tmp / "files.json").read_text())]
            assert stored == from_cli, f"service stored {len(stored)} visits, the CLI wrote {len(from_cli)}"
            assert json.loads((tmp / "api.json").read_text()) == json.loads((tmp / "files.json").read_text())
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
            if connection is not None:
                await connection.close()
            if pool is not None:
                await pool.close()
            await drop(name, prefix)

    def median(key: str) -> float:
        return float(statistics.median(getattr(r, key) for r in runs))

    service_s, cli_files_s, cli_api_s = median("service_s"), median("cli_files_s"), median("cli_api_s")
    ratio = statistics.median(r.service_s / r.cli_files_s for r in runs)
    print(f"day: {visits:,} visits, TSV {size_mb:,.0f} MB; {len(stored):,} level-4+ visits stored")
    print(f"sandbox warm-up (simulate, prepare)   {warm_s:8.2f} s   (not counted)")
    print(f"download alone (LogsApiClient)        {download_s:8.2f} s   ({size_mb / download_s:,.0f} MB/s)")
    print(f"CLI on files (whole process)          {cli_files_s:8.2f} s   [{_each(runs, 'cli_files_s')}]")
    print(f"CLI on the sandbox (whole process)    {cli_api_s:8.2f} s   [{_each(runs, 'cli_api_s')}]")
    print(f"service, message to completed         {service_s:8.2f} s   [{_each(runs, 'service_s')}]")
    order = ("queued", "claim", "evaluate", "prepare", "download", "read", "features", "scoring", "store")
    last = runs[-1].stages
    print("  stages (last round): " + ", ".join(f"{s} {last[s]:.2f}" for s in order if s in last))
    print(
        f"service / CLI on files                {ratio:8.2f} x   (target <= {TARGET_SERVICE_RATIO:.0f} x)"
        f"{'' if ratio <= TARGET_SERVICE_RATIO else '  NOT MET'}"
    )
    print(f"service / CLI on the sandbox          {service_s / cli_api_s:8.2f} x")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return {
        **store,
        "service_s": service_s,
        "cli_files_s": cli_files_s,
        "cli_api_s": cli_api_s,
        "download_s": download_s,
        "ratio": ratio,
    }


def _each(runs: list[Round], key: str) -> str:
    return ", ".join(f"{getattr(r, key):.2f}" for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="(CLI on files, service, CLI on the API) rounds"
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.visits, args.rounds))
    return 0 if figures["ratio"] <= TARGET_SERVICE_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
