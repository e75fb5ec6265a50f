"""Real service processes for fault tests: start with an environment, wait for a log line or a condition,
`kill -9`, terminate. Everything stays on loopback.

    sandbox = Proc("sandbox", ["-m", "sandbox", "--port", str(port)])
    await sandbox.start()
    await sandbox.wait_for_line(r"sandbox on http")
    scorer = Proc("scorer", ["-m", "scorer"], env=settings_env(settings))
    await scorer.start()
    ...
    scorer.kill()             # SIGKILL: no cleanup, no graceful shutdown
    await scorer.terminate()  # SIGTERM, then SIGKILL after a grace period
    await scorer.step_until(in_phase)  # run it in slices until a short phase shows; it stays stopped

A `procs` fixture (see `running`) keeps the list of started processes and kills whatever is still
alive at teardown, printing each one's output tail when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback TCP port free right now (the usual bind-to-0 trick; tiny race, fine for tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """`settings` as the environment a service process reads it from (FIELD_NAME=value), plus `extra`
    (names upper-cased; None drops a variable). Secrets are written as their value: the child needs them."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    for name, value in extra.items():
        if value is None:
            env.pop(name.upper(), None)
        else:
            env[name.upper()] = str(value)
    return env


class Proc:
    """One child process running `sys.executable *args` in the project root.

    Its stdout and stderr are merged and collected line by line (`lines`, `output`); `wait_for_line`
    waits for a line matching a regex. The child's environment is the parent's (PATH, HOME, ...) with
    `env` on top, so only what the test sets differs.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | str | None = None,
        inherit_env: bool = True,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = {**(os.environ if inherit_env else {}), **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.cwd = Path(cwd) if cwd is not None else ROOT
        self.lines: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Condition()

    def __repr__(self) -> str:
        return f"Proc({self.name!r}, pid={self.pid}, returncode={self.returncode})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, n: int = 40) -> str:
        return "\n".join(f"[{self.name}] {line}" for line in self.lines[-n:])

    async def start(self) -> Proc:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.lines = []
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a signal to the test runner's group never reaches it
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream's limit: take what is there
                raw = await stream.read(1 << 16)
            if not raw:
                break
            async with self._new_line:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._new_line.notify_all()
        async with self._new_line:
            self._new_line.notify_all()

    async def wait_for_line(self, pattern: str, timeout: float = 30, *, since: int = 0) -> re.Match[str]:
        """The first output line from index `since` on matching `pattern` (re.search); raises with the
        output tail if the process exits or `timeout` passes first."""
        regex = re.compile(pattern)
        checked = since

        def found() -> re.Match[str] | None:
            nonlocal checked
            while checked < len(self.lines):
                match = regex.search(self.lines[checked])
                checked += 1
                if match:
                    return match
            return None

        async def wait() -> re.Match[str]:
            async with self._new_line:
                while True:
                    match = found()
                    if match:
                        return match
                    if self._reader is None or self._reader.done():
                        raise AssertionError(
                            f"{self.name} exited ({self.returncode}) before printing {pattern!r}:\n"
                            + self.tail()
                        )
                    await self._new_line.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no line matching {pattern!r} in {timeout}s:\n{self.tail()}"
            ) from None

    async def wait_until(
        self, predicate: Callable[[], Awaitable[Any]], timeout: float = 30, interval: float = 0.05
    ) -> Any:
        """Poll `predicate` until it returns something truthy; fails early (with the output tail) if this
        process exits meanwhile."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await predicate()
            if value:
                return value
            if not self.running:
                raise AssertionError(f"{self.name} exited ({self.returncode}) while waiting:\n{self.tail()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: condition not met in {timeout}s:\n{self.tail()}")
            await asyncio.sleep(interval)

    def pause(self) -> None:
        """SIGSTOP: the process stands still (its threads, timers and sockets too) until `resume`."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGCONT)

    async def step_until(
        self, predicate: Callable[[], Awaitable[Any]], *, slice_s: float = 0.01, timeout: float = 30
    ) -> Any:
        """Catch a short phase: let the process run `slice_s` at a time and check `predicate` while it is
        stopped. Returns the first truthy value with the process left STOPPED (`kill` it, or `resume`);
        a phase that takes the process longer than a slice of its own time cannot slip past."""
        deadline = asyncio.get_running_loop().time() + timeout
        self.pause()
        try:
            while True:
                value = await predicate()
                if value:
                    return value
                if not self.running:
                    raise AssertionError(
                        f"{self.name} exited ({self.returncode}) while stepping:\n{self.tail()}"
                    )
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{self.name}: condition not met in {timeout}s:\n{self.tail()}")
                self.resume()
                await asyncio.sleep(slice_s)
                self.pause()
        except BaseException:
            self.resume()
            raise

    def kill(self) -> None:
        """`kill -9`: the process gets no chance to clean anything up."""
        if self.running:
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float = 30) -> int:
        assert self._proc is not None
        code = await asyncio.wait_for(self._proc.wait(), timeout)
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
        return code

    async def kill9(self, timeout: float = 30) -> int:
        """SIGKILL and wait until the process is gone."""
        self.kill()
        return await self.wait(timeout)

    async def terminate(self, grace_s: float = 15) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL if it is still alive after `grace_s`."""
        if self._proc is None:
            return None
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
                self._proc.send_signal(signal.SIGCONT)  # a paused process handles SIGTERM only once resumed
            try:
                return await self.wait(grace_s)
            except TimeoutError:
                self.kill()
        return await self.wait()


@contextlib.asynccontextmanager
async def running(*, verbose: bool = False) -> AsyncIterator[list[Proc]]:
    """A list to append started `Proc`s to; on exit every one still alive is terminated (SIGTERM, then
    SIGKILL). On an exception, or with `verbose`, each one's output tail goes to stderr."""
    procs: list[Proc] = []
    failed = False
    try:
        yield procs
    except BaseException:
        failed = True
        raise
    finally:
        await asyncio.gather(*(p.terminate(grace_s=10) for p in procs), return_exceptions=True)
        if failed or verbose:
            for proc in procs:
                print(f"--- {proc!r}\n{proc.tail(80)}", file=sys.stderr)


def sandbox_args(port: int, **options: Any) -> list[str]:
    """`python -m sandbox` arguments on loopback: `sandbox_args(p, processing_seconds=2)` ->
    [..., "--processing-seconds", "2"]; a list value repeats the flag (tokens, goals)."""
    args = ["-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        for item in value if isinstance(value, list | tuple) else [value]:
            args += [flag, str(item)]
    return args


async def start_sandbox(procs: list[Proc], port: int | None = None, **options: Any) -> tuple[Proc, str]:
    """A `python -m sandbox` process on a free loopback port, ready: (the process, its base URL)."""
    port = port or free_port()
    proc = Proc("sandbox", sandbox_args(port, **options))
    procs.append(proc)
    await proc.start()
    await proc.wait_for_line(r"Running on|sandbox on http", timeout=30)
    url = f"http://127.0.0.1:{port}"
    await _wait_http(proc, url + "/sandbox/faults")
    return proc, url


async def _wait_http(proc: Proc, url: str, timeout: float = 15) -> None:
    import aiohttp

    async def up() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as resp:
                return resp.status < 500
        except aiohttp.ClientError:
            return False

    await proc.wait_until(up, timeout=timeout, interval=0.05)
