"""`make demo`: the stack on loopback and the sandbox: score a past day, upload its level-4+ visits and a
webhook batch as offline conversions, make a counter's daily schedule and wait for its first run, print
what happened, stop."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from shared import broker

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "demo-key"
COUNTER = 123456
SCHEDULED_COUNTER = 54000123  # the sandbox puts counters 54xxxxxx in Asia/Novosibirsk (docs/sandbox.md)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """The services as child processes, each with its log under .run/demo/."""

    def __init__(self) -> None:
        self.sandbox_port = free_port()
        self.gateway_port = free_port()
        self.prefix = f"demo.{uuid.uuid4().hex[:8]}"
        # a database of its own, dropped at the end: each run shows a fresh stack (conversions sent by an
        # earlier run would otherwise be reported as duplicates and not sent again)
        self.own_database = "DATABASE_URL" not in os.environ
        self.database_url = os.environ.get(
            "DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/metrika_demo_{self.prefix[5:]}"
        )
        self.logs = ROOT / ".run" / "demo"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "METRIKA_SCORE_ENV": "development",
            "API_KEYS": API_KEY,
            "PORT": str(self.gateway_port),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.gateway_port}",
            "METRIKA_API_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "QUEUE_PREFIX": self.prefix,
            "DATABASE_URL": self.database_url,
            "WORK_DIR": str(self.logs / "work"),
            "LOGS_POLL_INITIAL_S": "0.5",
            "UPLOAD_POLL_S": "0.5",
            "SCHEDULER_INTERVAL_S": "1",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> None:
        log = open(self.logs / f"{args[0]}.log", "wb")
        self.procs.append(
            subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=self.env, stdout=log, stderr=log)
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    async def drop_queues(self) -> None:
        topology = broker.Topology(self.prefix)
        connection = await aio_pika.connect(os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
        async with connection:
            channel = await connection.channel()
            for key in broker.ROUTING_KEYS:
                await channel.queue_delete(topology.queue(key))
                await channel.queue_delete(topology.dead_queue(key))
            await channel.exchange_delete(topology.exchange)
            await channel.exchange_delete(topology.dead_exchange)
        if self.own_database:
            base, name = self.database_url.rsplit("/", 1)
            admin = await asyncpg.connect(f"{base}/postgres")
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


async def wait_http(session: aiohttp.ClientSession, url: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as resp:
                if resp.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit(f"{what} did not start; see .run/demo/{what}.log")


def bar(percent: int, message: str) -> None:
    filled = percent * 30 // 100
    sys.stdout.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% {message:<28}")
    sys.stdout.flush()


async def score_a_day(session: aiohttp.ClientSession, gateway: str, day: dt.date) -> dict[str, Any]:
    body = {"date": day.isoformat(), "token": "sandbox-token", "counter": COUNTER}
    async with session.post(f"{gateway}/tasks", json=body) as resp:
        resp.raise_for_status()
        task_id = (await resp.json())["task_id"]
    print(f"task {task_id}: scoring counter {COUNTER} for {day}")
    while True:
        async with session.get(f"{gateway}/tasks/{task_id}/status") as resp:
            status = await resp.json()
        bar(status["progress"], status["message"] or status["status"])
        if status["status"] in ("completed", "failed"):
            print()
            break
        await asyncio.sleep(0.3)
    if status["status"] == "failed":
        raise SystemExit(f"task failed: {status['error']}")
    async with session.get(f"{gateway}/tasks/{task_id}/result", params={"limit": 5}) as resp:
        result = await resp.json()
    return {"task_id": task_id, "status": status, "result": result}


def summary(outcome: dict[str, Any]) -> None:
    found = outcome["result"]["pagination"]["total"]
    total = outcome["status"].get("total_visits") or 0
    share = f"{100 * found / total:.1f}%" if total else "n/a"
    print(f"\nlevel-4+ visits: {found} of {total} visits ({share})")
    print(f"{'visitId':>22} {'clientId':>22} {'dateTime':>20} {'duration':>8} {'score':>6}")
    for row in outcome["result"]["data"]:
        print(
            f"{row['visitId']:>22} {row['clientId']:>22} {row['dateTime']:>20} "
            f"{row['visitDuration']:>8} {row['score']:>6.3f}"
        )


async def wait_final(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> Any:
    while True:
        async with session.get(url, headers=headers) as resp:
            body = await resp.json()
        if body["status"] in ("processed", "completed", "error"):  # an upload's word, a webhook batch's
            return body
        await asyncio.sleep(0.5)


def show_upload(title: str, body: dict[str, Any]) -> None:
    print(f"{title}: {body['status']}, processed {body['processed']} of {body['total']}")
    for error in body.get("errors") or []:
        where = f"row {error['index']}: " if error.get("index") is not None else ""
        print(f"    {where}{error['reason']}")


async def upload_conversions(session: aiohttp.ClientSession, gateway: str, outcome: dict[str, Any]) -> None:
    task_id = outcome["task_id"]
    print("\nuploading the level-4+ visits as offline conversions (goal '4plus')...")
    async with session.post(
        f"{gateway}/conversions/bulk", json={"task_id": task_id, "target": "4plus"}
    ) as resp:
        bulk = await resp.json()
    if resp.status != 200:
        raise SystemExit(f"bulk upload refused: {bulk}")
    show_upload(
        f"bulk upload {bulk['upload_id']}",
        await wait_final(session, f"{gateway}/conversions/{bulk['upload_id']}/status"),
    )

    print("\na CRM webhook: create it, then post a batch as a CRM would...")
    async with session.post(
        f"{gateway}/webhook/offline-conversions",
        json={
            "name": "Demo CRM",
            "counter_id": COUNTER,
            "token": "sandbox-token",
            "description": "make demo",
        },
    ) as resp:
        hook = await resp.json()
    print(f"webhook url: {hook['url']}")
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0).isoformat()
    visitor = outcome["result"]["data"][0]["clientId"] if outcome["result"]["data"] else "1"
    batch = {
        "conversions": [
            {
                "client_id": visitor,
                "target": "purchase",
                "date_time": when,
                "price": 1500,
                "currency": "RUB",
                "purchase_id": "order123",
            },
            {"user_id": "user123", "target": "registration", "date_time": when},
        ]
    }
    secret = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    url = f"{gateway}/webhook/offline-conversions/{hook['webhook_id']}"
    async with session.post(url, json=batch, headers=secret) as resp:
        accepted = await resp.json()
    print(f"batch {accepted['batch_id']}: {accepted['status']}, {accepted['accepted_count']} conversions")
    final = await wait_final(session, f"{url}/status?batch_id={accepted['batch_id']}", secret)
    show_upload(f"webhook batch (Metrika upload ids {final['metrika_upload_id']})", final)

    print("\nan amoCRM webhook: a lead moved to 'won' (status 142), posted as amoCRM posts it...")
    amo = {
        "name": "Demo amoCRM",
        "counter_id": COUNTER,
        "token": "sandbox-token",
        "source": "amocrm",
        "mapping": {"target_by_status": {"142": "purchase"}, "client_id_field": "_YM_UID"},
    }
    async with session.post(f"{gateway}/webhook/offline-conversions", json=amo) as resp:
        amo_hook = await resp.json()
    print(f"webhook url (paste it into amoCRM): {amo_hook['url']}")
    lead = "leads[status][0]"
    form = {
        f"{lead}[id]": "501",
        f"{lead}[status_id]": "142",
        f"{lead}[price]": "15000",
        f"{lead}[updated_at]": str(int(time.time()) - 60),
        f"{lead}[custom_fields][0][code]": "_YM_UID",
        f"{lead}[custom_fields][0][values][0][value]": visitor,
        "account[id]": "29085955",
    }
    async with session.post(amo_hook["url"], data=form, headers={"Authorization": ""}) as resp:
        crm_batch = await resp.json()
    print(f"batch {crm_batch['batch_id']}: {crm_batch['status']}, {crm_batch['events']} event(s)")
    final = await wait_final(session, f"{gateway}/conversions/{crm_batch['batch_id']}/status")
    show_upload("amoCRM batch", final)


async def daily_schedule(session: aiohttp.ClientSession, gateway: str) -> None:
    print(
        f"\nthe daily job: counter {SCHEDULED_COUNTER} scored every day at 00:00 its time, "
        "level-4+ visits uploaded (goal '4plus')..."
    )
    body = {
        "counter": SCHEDULED_COUNTER,
        "token": "sandbox-token",
        "time": "00:00",
        "upload": {"target": "4plus"},
    }
    async with session.post(f"{gateway}/schedules", json=body) as resp:
        schedule = await resp.json()
    if resp.status != 201:
        raise SystemExit(f"schedule refused: {schedule}")
    next_run = dt.datetime.fromisoformat(schedule["next_run_at"])
    due = " (passed: made now)" if next_run <= dt.datetime.now(dt.UTC) else ""
    print(
        f"schedule {schedule['schedule_id']}: counter {schedule['counter']} at {schedule['time']} "
        f"{schedule['timezone']}, next run {next_run:%Y-%m-%d %H:%M} UTC{due}"
    )
    # 00:00 has passed today in the counter's zone: the scheduler (every SCHEDULER_INTERVAL_S) makes the run
    # for the counter's local yesterday at once, then uploads its level-4+ visits when the task completes
    runs_url = f"{gateway}/schedules/{schedule['schedule_id']}/runs"
    deadline = time.monotonic() + 120
    while True:
        async with session.get(runs_url) as resp:
            runs = (await resp.json())["data"]
        if runs and runs[-1]["status"] in ("uploaded", "completed", "failed"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the schedule made no finished run; see .run/demo/scheduler.log ({runs})")
        await asyncio.sleep(0.5)
    first = runs[-1]
    async with session.get(f"{gateway}/tasks/{first['task_id']}/status") as resp:
        status = await resp.json()
    print(
        f"first run: {first['date']} (the counter's yesterday), task {first['task_id']}: {status['status']}"
    )
    if first["status"] == "failed":
        raise SystemExit(f"the run failed: {first['note']}")
    async with session.get(f"{gateway}/tasks/{first['task_id']}/result", params={"limit": 1}) as resp:
        found = (await resp.json())["pagination"]["total"]
    total = status.get("total_visits") or 0
    share = f"{100 * found / total:.1f}%" if total else "n/a"
    print(f"level-4+ visits: {found} of {total} visits ({share})")
    if first["upload_id"] is None:
        print(f"run {first['status']}: {first['note']}")
        return
    show_upload(
        f"scheduled upload {first['upload_id']}",
        await wait_final(session, f"{gateway}/conversions/{first['upload_id']}/status"),
    )


async def run(stack: Stack) -> None:
    gateway = f"http://127.0.0.1:{stack.gateway_port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        stack.start("sandbox", "--port", str(stack.sandbox_port))
        await wait_http(session, f"http://127.0.0.1:{stack.sandbox_port}/sandbox/requests", "sandbox")
        stack.start("gateway")
        await wait_http(session, f"{gateway}/health", "gateway")
        stack.start("scorer")
        stack.start("uploader")
        stack.start("scheduler")
        print(
            f"stack up: gateway {gateway}, sandbox http://127.0.0.1:{stack.sandbox_port} (logs in .run/demo/)"
        )
        outcome = await score_a_day(session, gateway, dt.date.today() - dt.timedelta(days=1))
        summary(outcome)
        await upload_conversions(session, gateway, outcome)
        await daily_schedule(session, gateway)


def main() -> None:
    stack = Stack()
    try:
        asyncio.run(run(stack))
    finally:
        stack.stop()
        asyncio.run(stack.drop_queues())
        print("\nstopped the demo stack")


if __name__ == "__main__":
    main()
