"""Fixtures of the conversions fault tests: the stack as real processes (`make_stack`), and a private
RabbitMQ node and a private PostgreSQL cluster that a test may stop and start without touching the
machine's own servers (other tests run against those)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import AMQP_URL
from tests.faults.procs import Proc, free_port, running
from tests.faults.stack import Stack, fault_settings

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
# a private node that takes longer than this to start is not worth it (see private_broker)
BROKER_START_BUDGET_S = 20.0


@pytest.fixture
async def procs() -> AsyncIterator[list[Proc]]:
    """Started processes; all stopped at teardown, and their output tails printed (shown on failure)."""
    async with running(verbose=True) as started:
        yield started
        # the services before the sandbox, so that their last log lines are not about a Metrika gone away
        services = [p for p in started if p.name != "sandbox"]
        await asyncio.gather(*(p.terminate(grace_s=10) for p in services), return_exceptions=True)


@pytest.fixture
async def make_stack(
    database_url: str, queue_prefix: str, procs: list[Proc]
) -> AsyncIterator[Callable[..., Stack]]:
    """`make_stack(**settings_overrides)`: the test's Stack on the test's database and queue prefix
    (overridable, e.g. a private broker's amqp_url); nothing is started yet. `procs` comes last, so its
    processes stop before the database is dropped."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        def make(**overrides: Any) -> Stack:
            values = {"database_url": database_url, "amqp_url": AMQP_URL, "queue_prefix": queue_prefix}
            values.update(overrides)
            return Stack(procs, http, fault_settings(sandbox_port=free_port(), **values))

        yield make


# --- a private RabbitMQ node -------------------------------------------------------------------------


@dataclass
class Broker:
    node: str
    amqp_url: str
    env: dict[str, str]
    ctl_path: str
    start_s: float

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl -n <node> args...` (blocking: call it through asyncio.to_thread in a test)."""
        done = subprocess.run(
            [self.ctl_path, "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def private_broker() -> Iterator[Broker]:
    """A RabbitMQ node of its own (own name, ports, data, logs and Erlang cookie), as a child process:
    the test may `stop_app` it while the machine's broker serves everybody else. About 4 s to start.

    Without the RabbitMQ scripts, or if the node is not up within BROKER_START_BUDGET_S, the test uses
    the machine's node `rabbit@localhost` only where that is allowed (CI set, or
    METRIKA_FAULTS_MAIN_BROKER=1), else it is skipped."""
    server = RABBITMQ_BIN / "rabbitmq-server"
    if not server.exists():
        yield _main_broker("no RabbitMQ scripts in " + str(RABBITMQ_BIN))
        return
    base = Path(tempfile.mkdtemp(prefix="metrika-mq-"))
    home = base / "home"
    for sub in ("home", "mnesia", "log"):
        (base / sub).mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex.upper())
    cookie.chmod(0o400)
    (base / "env.conf").write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf (it names the main node)
    (base / "enabled_plugins").write_text("[].\n")
    amqp_port, dist_port = free_port(), free_port()
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{amqp_port}\nloopback_users = none\n")
    node = f"mstest{os.getpid()}x{amqp_port}@localhost"
    env = {
        **os.environ,
        "HOME": str(home),  # the Erlang cookie the node and rabbitmqctl share
        "RABBITMQ_CONF_ENV_FILE": str(base / "env.conf"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    started = time.monotonic()
    with open(base / "server.out", "wb") as out:
        child = subprocess.Popen(
            [str(server)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    broker = Broker(
        node, f"amqp://guest:guest@127.0.0.1:{amqp_port}/", env, str(RABBITMQ_BIN / "rabbitmqctl"), 0
    )
    try:
        while not _port_open(amqp_port):
            if child.poll() is not None or time.monotonic() - started > BROKER_START_BUDGET_S:
                break
            time.sleep(0.1)
        if not _port_open(amqp_port):
            log = (base / "server.out").read_text(errors="replace")[-2000:]
            child.kill()
            child.wait()
            shutil.rmtree(base, ignore_errors=True)
            yield _main_broker(
                f"private RabbitMQ node not up in {time.monotonic() - started:.1f}s "
                f"(limit {BROKER_START_BUDGET_S}s): {log}"
            )
            return
        broker.ctl("await_startup")
        broker.start_s = time.monotonic() - started
        print(f"private RabbitMQ node {node} up in {broker.start_s:.1f}s")
        yield broker
    finally:
        if child.poll() is None:
            try:
                broker.ctl("stop", timeout=30)
                child.wait(timeout=30)
            except (AssertionError, subprocess.TimeoutExpired):
                child.kill()
                child.wait()
        shutil.rmtree(base, ignore_errors=True)


def _main_broker(why: str) -> Broker:
    if not (os.environ.get("CI") or os.environ.get("METRIKA_FAULTS_MAIN_BROKER") == "1"):
        pytest.skip(
            f"{why}; set METRIKA_FAULTS_MAIN_BROKER=1 (or CI) to stop and start the main node instead"
        )
    print(f"{why}: using the main RabbitMQ node rabbit@localhost (CI or METRIKA_FAULTS_MAIN_BROKER=1)")
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    return Broker("rabbit@localhost", AMQP_URL, dict(os.environ), ctl, 0)


# --- a private PostgreSQL cluster --------------------------------------------------------------------


@dataclass
class Postgres:
    data: Path
    port: int
    pg_ctl: str
    options: str
    log: Path
    as_postgres: list[str]

    @property
    def root_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_postgres, self.pg_ctl, "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        """Blocking: call it through asyncio.to_thread in a test."""
        self._pg_ctl("-o", self.options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own on a free loopback port (trust auth, user postgres, fsync off),
    so that a test can stop and start it; as root, initdb and pg_ctl run as the `postgres` OS user."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("initdb/pg_ctl not found: cannot start a private PostgreSQL cluster")
    as_postgres: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="metrika-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    port = free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    cluster = Postgres(base / "data", port, pg_ctl, options, base / "server.log", as_postgres)
    done = subprocess.run(
        [*as_postgres, initdb, "-D", str(cluster.data), "-A", "trust", "-U", "postgres"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"initdb: {done.stdout}{done.stderr}"
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(base, ignore_errors=True)
