"""The Yandex Metrika Logs API on the shared client base: evaluate -> create -> poll -> download parts ->
clean. Every failure is a `shared.metrika.MetrikaError`; `retryable` ones pass with time."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from shared import metrics
from shared.metrika import COUNTER_BUSY, PREPARING, Handle, MetrikaApi, MetrikaError, T
from shared.settings import Settings

if TYPE_CHECKING:  # asyncpg loads only in the services, not for a CLI download
    from shared.db.slots import CounterSlots

__all__ = ["Keeper", "Ledger", "LogsApiClient", "MetrikaError", "PrepareHold", "StageCallback"]

logger = logging.getLogger(__name__)

SOURCES = frozenset({"visits", "hits"})
# a request in one of these states holds no files: nothing to download, nothing to clean
GONE = frozenset({"canceled", "cleaned_by_user", "cleaned_automatically_as_too_old"})
FAILED = GONE | {"processing_failed"}
# the quota's second, and a margin for requests that reach Yandex unevenly late
WINDOW_S = 1.05
StageCallback = Callable[[str, float], Awaitable[None] | None]


class Ledger(Protocol):
    """Where the caller records the log requests it owns, so that a crash never leaves one behind: one
    `created` right after Yandex answers the create call, one `released` once it is canceled or cleaned."""

    async def created(self, request_id: str, source: str) -> None: ...

    async def released(self, request_id: str) -> None: ...


class Keeper(Protocol):
    """Where a task keeps the log requests still being prepared when it gives its turn back, so that its
    next attempt (in any replica) goes on with them instead of asking Yandex to start again."""

    async def resumable(self, source: str) -> tuple[str, float] | None:
        """The kept request of `source` (its id, and its age in seconds), if there is one."""
        ...

    async def kept(self, request_id: str) -> None: ...


@dataclass
class PrepareHold:
    """One attempt polls requests still being prepared until `until` (the event loop's clock); then it
    gives its turn back with a retryable MetrikaError of type PREPARING, `yielded` is set, and the
    requests of the attempt (both sources') are kept by `keeper` rather than released."""

    keeper: Keeper
    until: float
    yielded: bool = False


async def _report(on_stage: StageCallback | None, stage: str, fraction: float) -> None:
    if on_stage is not None:
        result = on_stage(stage, min(max(fraction, 0.0), 1.0))
        if result is not None:
            await result


class LogsApiClient(MetrikaApi):
    """One counter's Logs API, configured by `Settings` (base URL, in-process retries, call timeout,
    polling). 429, 5xx, timeouts and connection errors are retried in process; past that they are raised
    as retryable MetrikaErrors for the caller to schedule durably. Other 4xx raise at once.

    With `slots`, every call holds one of the counter's LOGS_API_PARALLEL_PER_COUNTER slots shared by all
    replicas while it is in flight (not during a retry's backoff); when they stay busy for
    COUNTER_SLOT_WAIT_S the call raises a retryable MetrikaError of type COUNTER_BUSY at once."""

    api = "logs"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        token: str,
        counter: int,
        *,
        chunk_size: int = 1 << 20,
        slots: CounterSlots | None = None,
    ) -> None:
        super().__init__(
            session,
            settings.metrika_api_url,
            token,
            counter,
            attempts=settings.http_retry_attempts,
            backoff_max_s=settings.http_retry_max_s,
            timeout_s=settings.metrika_timeout_s,
        )
        self.poll_initial_s, self.poll_max_s = settings.logs_poll_initial_s, settings.logs_poll_max_s
        self.prepare_timeout_s = settings.logs_poll_timeout_s
        self.chunk_size = chunk_size
        self._slots = slots
        self._window = request_window(settings.metrika_api_url, settings.logs_api_rps)
        # a part streams for as long as it takes; only a stalled read or connect times out
        timeout_s = settings.metrika_timeout_s
        self._stream_timeout = aiohttp.ClientTimeout(sock_connect=timeout_s, sock_read=timeout_s)

    async def send(
        self,
        method: str,
        path: str,
        handle: Handle[T] | None = None,
        *,
        timeout: aiohttp.ClientTimeout | None = None,
        **kwargs: Any,
    ) -> T | Any:
        """Every call (retries too) holds one of the counter's slots and starts within the Logs API's
        requests-per-second quota."""
        if self._slots is None:
            await self._window.wait()
            return await super().send(method, path, handle, timeout=timeout, **kwargs)
        from shared.db.slots import LOGS_API, SlotsBusy

        try:
            async with self._slots.hold(LOGS_API, self.counter):
                await self._window.wait()
                return await super().send(method, path, handle, timeout=timeout, **kwargs)
        except SlotsBusy as exc:
            context = f"{method} {path.split('?', 1)[0]}"
            raise MetrikaError(
                f"{exc} (LOGS_API_PARALLEL_PER_COUNTER)", error_type=COUNTER_BUSY, context=context
            ) from None

    async def _json(
        self, method: str, path: str, key: str = "log_request", params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        async def handle(resp: aiohttp.ClientResponse) -> dict[str, Any]:
            try:
                return dict((await resp.json(content_type=None))[key])
            except (KeyError, TypeError) as exc:  # MetrikaApi reports a ValueError as an unreadable answer
                raise ValueError(f"no {key!r} object") from exc

        result: dict[str, Any] = await self.call(method, path, handle, params=params)
        return result

    async def evaluate(self, day: date, source: str, fields: Sequence[str]) -> dict[str, Any]:
        params = _query(day, source, fields)
        return await self._json("GET", "/logrequests/evaluate", "log_request_evaluation", params)

    async def create(self, day: date, source: str, fields: Sequence[str]) -> dict[str, Any]:
        return await self._json("POST", "/logrequests", params=_query(day, source, fields))

    async def info(self, request_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/logrequest/{request_id}")

    async def cancel(self, request_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/logrequest/{request_id}/cancel")

    async def clean(self, request_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/logrequest/{request_id}/clean")

    async def download(
        self,
        day: date,
        source: str,
        fields: Sequence[str],
        dest: Path,
        on_stage: StageCallback | None = None,
        ledger: Ledger | None = None,
        hold: PrepareHold | None = None,
    ) -> list[Path]:
        """Export one day of `source` into `dest/{source}_{n}.tsv` (TabSeparatedWithNames per part).

        The log request is always cleaned (or canceled while still `created`) afterwards, also on errors
        and cancellation; `ledger` hears of its creation and release. With `hold`, a request kept by an
        earlier attempt is taken up again, and one still being prepared when the hold ends is kept (see
        PrepareHold). Files of an earlier export with the same names are replaced."""
        if source not in SOURCES or not fields:
            raise ValueError(f"source must be one of {sorted(SOURCES)} and fields non-empty, got {source!r}")
        resumed = await self._resume(source, fields, hold, ledger)
        if resumed is not None:
            request_id, age_s = resumed
        else:
            request_id, age_s = await self._create(day, source, fields, on_stage, ledger), 0.0
        status = "created"
        try:
            with metrics.LOGS_API_SECONDS.labels("prepare").time():
                info = await self._wait(request_id, on_stage, age_s, hold)
            status = "processed"
            with metrics.LOGS_API_SECONDS.labels("download").time():
                return await self._download_parts(request_id, info, source, dest, on_stage)
        finally:
            # shielded: a cancelled task still frees Yandex's storage (or keeps its request) before it goes
            if hold is not None and hold.yielded:
                await asyncio.shield(hold.keeper.kept(request_id))
                logger.info("counter %s: log request %s kept for the next attempt", self.counter, request_id)
            elif await asyncio.shield(self.release(request_id, status)) and ledger is not None:
                await asyncio.shield(ledger.released(request_id))

    async def _resume(
        self, source: str, fields: Sequence[str], hold: PrepareHold | None, ledger: Ledger | None
    ) -> tuple[str, float] | None:
        """The request an earlier attempt kept for `source`, if Yandex still prepares or holds it for the
        same fields (else it is released); its id and age."""
        found = None if hold is None else await hold.keeper.resumable(source)
        if found is None:
            return None
        request_id, age_s = found
        try:
            info = await self.info(request_id)
        except MetrikaError as exc:
            if exc.status not in (400, 404):
                raise
            info = {}
        status = str(info.get("status"))
        if status in ("created", "processed") and list(info.get("fields") or []) == list(fields):
            logger.info("counter %s: log request %s (%s) taken up again", self.counter, request_id, status)
            return request_id, age_s
        if await self.release(request_id, status if info else "canceled") and ledger is not None:
            await ledger.released(request_id)
        return None

    async def _create(
        self,
        day: date,
        source: str,
        fields: Sequence[str],
        on_stage: StageCallback | None,
        ledger: Ledger | None,
    ) -> str:
        await _report(on_stage, "evaluate", 0.0)
        evaluation = await self.evaluate(day, source, fields)
        if not evaluation.get("possible", False):
            # the counter's 10 GB of prepared logs are full: space frees as requests are cleaned
            quantity = evaluation.get("max_possible_day_quantity")
            raise MetrikaError(
                f"cannot prepare {source} for {day}: evaluate says possible=false, "
                f"max_possible_day_quantity={quantity}; clean old log requests of counter {self.counter}",
                error_type="quota_logs_storage",
                context="evaluate",
            )
        await _report(on_stage, "evaluate", 1.0)
        request_id = str((await self.create(day, source, fields))["request_id"])
        logger.info("counter %s: log request %s for %s %s created", self.counter, request_id, source, day)
        if ledger is not None:
            await ledger.created(request_id, source)
        return request_id

    async def release(self, request_id: str, status: str | None = None) -> bool:
        """Free Yandex's storage: cancel a request still being prepared, clean a prepared one. `status` is
        what the caller last saw (None: ask). True once the request holds nothing (also when Yandex says it
        is unknown or already gone); False if it is left for a later try."""
        try:
            if status is None:
                status = str((await self.info(request_id)).get("status"))
            if status in ("created", "awaiting_retry"):
                try:
                    await self.cancel(request_id)
                    return True
                except MetrikaError as exc:
                    if exc.status != 400:
                        raise
                    # prepared meanwhile: clean it instead
                    logger.info("log request %s could not be canceled (%s), cleaning it", request_id, exc)
            if status not in GONE:
                await self.clean(request_id)
            return True
        except MetrikaError as exc:
            if exc.status in (400, 404):  # unknown, or in a state with nothing left to free
                logger.info("log request %s is already gone: %s", request_id, exc)
                return True
            logger.warning("log request %s left on Yandex's side for now (%s): %s", request_id, status, exc)
            return False

    async def _wait(
        self,
        request_id: str,
        on_stage: StageCallback | None,
        age_s: float = 0.0,
        hold: PrepareHold | None = None,
    ) -> dict[str, Any]:
        """Poll until the request is processed; it was created `age_s` ago (by an earlier attempt)."""
        loop = asyncio.get_running_loop()
        started, delay = loop.time() - age_s, self.poll_initial_s
        while True:
            await _report(on_stage, "prepare", (elapsed := loop.time() - started) / (elapsed + 60.0))
            info = await self.info(request_id)
            status = str(info.get("status"))
            if status == "processed":
                await _report(on_stage, "prepare", 1.0)
                return info
            if status in FAILED:
                # Yandex's side failed or dropped it: a new request may well pass
                raise MetrikaError(
                    f"log request {request_id} ended as {status}", error_type=status, context="prepare"
                )
            remaining = self.prepare_timeout_s - (loop.time() - started)
            if remaining <= 0:
                raise MetrikaError(
                    f"log request {request_id} still {status} after {self.prepare_timeout_s:.0f}s",
                    error_type="timeout",
                    context="prepare",
                )
            if hold is not None:
                if loop.time() >= hold.until or hold.yielded:
                    hold.yielded = True
                    raise MetrikaError(
                        f"log request {request_id} still {status} after {loop.time() - started:.0f}s",
                        error_type=PREPARING,
                        context="prepare",
                    )
                remaining = min(remaining, hold.until - loop.time())
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, self.poll_max_s)

    async def _download_parts(
        self, request_id: str, info: dict[str, Any], source: str, dest: Path, on_stage: StageCallback | None
    ) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        ours = re.compile(rf"^{source}_\d+\.tsv(\.part)?$")
        for stale in dest.iterdir():
            if ours.match(stale.name):
                stale.unlink()
        parts = sorted(info.get("parts") or [], key=lambda p: int(p["part_number"]))
        total = sum(int(p.get("size") or 0) for p in parts) or 1
        done: dict[int, int] = {}
        paths: list[Path] = []
        await _report(on_stage, "download", 0.0)
        try:
            for part in parts:
                number = int(part["part_number"])
                target = dest / f"{source}_{number}.tsv"
                tmp = target.with_name(target.name + ".part")

                async def handle(resp: aiohttp.ClientResponse, number: int = number, tmp: Path = tmp) -> None:
                    done[number] = 0
                    out = await asyncio.to_thread(tmp.open, "wb")
                    try:  # the file written off the event loop: a slow disk never stalls the heartbeat
                        async for chunk in resp.content.iter_chunked(self.chunk_size):
                            await asyncio.to_thread(out.write, chunk)
                            done[number] += len(chunk)
                            metrics.LOGS_API_BYTES.inc(len(chunk))
                            await _report(on_stage, "download", sum(done.values()) / total)
                    finally:
                        await asyncio.to_thread(out.close)

                path = f"/logrequest/{request_id}/part/{number}/download"
                await self.call("GET", path, handle, timeout=self._stream_timeout)
                tmp.replace(target)
                paths.append(target)
        except BaseException:
            for leftover in dest.iterdir():
                if ours.match(leftover.name):
                    leftover.unlink(missing_ok=True)
            raise
        if not parts:
            logger.warning("log request %s is processed but lists no parts", request_id)
        await _report(on_stage, "download", 1.0)
        logger.info(
            "log request %s: %d parts, %d bytes downloaded", request_id, len(paths), sum(done.values())
        )
        return paths


class RequestWindow:
    """At most `limit` requests started in any `window_s` seconds, as Yandex counts the Logs API's quota
    (requests per second per IP): a caller reserves the next free start at once and sleeps until then, so
    a fast download paces itself instead of meeting 429s and their backoff. A limit of 0 or less: no
    pacing."""

    def __init__(
        self, limit: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._starts: collections.deque[float] = collections.deque()

    def reserve(self) -> float:
        """The seconds to wait before starting one request (0: now)."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        start = now if len(self._starts) < self.limit else max(now, self._starts[0] + self.window_s)
        self._starts.append(start)
        while len(self._starts) > self.limit:
            self._starts.popleft()
        return start - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


# one window per Logs API address for this process, whatever the number of tasks and clients on it; the
# quota counts per IP, so replicas on one host share it: those meet the odd 429 and retry it
_WINDOWS: dict[tuple[str, int], RequestWindow] = {}


def request_window(base_url: str, limit: int) -> RequestWindow:
    key = (base_url, limit)
    window = _WINDOWS.get(key)
    if window is None:
        window = _WINDOWS[key] = RequestWindow(limit)
    return window


def _query(day: date, source: str, fields: Sequence[str]) -> dict[str, str]:
    return {"date1": day.isoformat(), "date2": day.isoformat(), "source": source, "fields": ",".join(fields)}
