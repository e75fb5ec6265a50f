"""Async client of the Yandex Metrika Logs API: evaluate -> create -> poll -> download parts -> clean."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import tenacity

__all__ = ["YANDEX_API", "LogsApiClient", "LogsApiError", "LogsApiQuotaError", "StageCallback"]

log = logging.getLogger(__name__)

YANDEX_API = "https://api-metrika.yandex.net"
SOURCES = frozenset({"visits", "hits"})
FAILED = frozenset({"processing_failed", "canceled", "cleaned_by_user", "cleaned_automatically_as_too_old"})
StageCallback = Callable[[str, float], Awaitable[None] | None]
T = TypeVar("T")


class LogsApiError(Exception):
    """A Logs API failure; ``message`` is Yandex's own text when there is one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        retryable: bool = False,
        context: str = "",
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.error_type = message, status, error_type
        self.retryable, self.context, self.attempts = retryable, context, 1

    @property
    def quota(self) -> bool:
        return bool(self.error_type and self.error_type.startswith("quota"))

    def __str__(self) -> str:
        where = f" {self.context}" if self.context else ""
        http = f" HTTP {self.status}" if self.status is not None else ""
        kind = f" {self.error_type}" if self.error_type else ""
        tries = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"Yandex Logs API{where} failed:{http}{kind}: {self.message}{tries}"


class LogsApiQuotaError(LogsApiError):
    """A quota refusal: 429 ``quota_*`` or evaluate's ``possible=false``."""

    @property
    def quota(self) -> bool:
        return True


@dataclass
class _Job:
    request_id: int
    status: str = "created"


async def _report(on_stage: StageCallback | None, stage: str, fraction: float) -> None:
    if on_stage is not None:
        result = on_stage(stage, min(max(fraction, 0.0), 1.0))
        if result is not None:
            await result


async def _error(resp: aiohttp.ClientResponse, context: str) -> LogsApiError:
    text = await resp.text(errors="replace")
    error_type, message = None, text.strip()[:300] or resp.reason or "no message"
    try:
        body = await resp.json(content_type=None)
        first = (body.get("errors") or [{}])[0]
        error_type = first.get("error_type")
        message = first.get("message") or body.get("message") or message
    except (ValueError, AttributeError, IndexError, TypeError):
        pass
    retryable = resp.status == 429 or resp.status >= 500
    cls = LogsApiQuotaError if resp.status == 429 else LogsApiError
    return cls(message, status=resp.status, error_type=error_type, retryable=retryable, context=context)


class LogsApiClient:
    """One counter's Logs API. 429, 5xx and connection errors are retried with exponential backoff and
    jitter (``max_attempts`` tries per call); other errors raise at once."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        counter: int,
        *,
        base_url: str = YANDEX_API,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        poll_initial: float = 2.0,
        poll_max: float = 30.0,
        prepare_timeout: float = 6 * 3600.0,
        request_timeout: float = 120.0,
        chunk_size: int = 1 << 16,
    ) -> None:
        self._session, self._headers, self.counter = session, {"Authorization": f"OAuth {token}"}, counter
        self.base_url = f"{base_url.rstrip('/')}/management/v1/counter/{counter}"
        self.poll_initial, self.poll_max, self.prepare_timeout = poll_initial, poll_max, prepare_timeout
        self.chunk_size = chunk_size
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._stream_timeout = aiohttp.ClientTimeout(sock_connect=request_timeout, sock_read=request_timeout)
        self._retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=tenacity.wait_exponential_jitter(backoff_initial, backoff_max, jitter=backoff_initial),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, LogsApiError) and e.retryable),
            before_sleep=_log_retry,
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"LogsApiClient(counter={self.counter}, base_url={self.base_url!r})"

    async def _once(
        self,
        method: str,
        path: str,
        handle: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        params: dict[str, str] | None,
        timeout: aiohttp.ClientTimeout,
    ) -> T:
        url, context = self.base_url + path, f"{method} {path}"
        try:
            async with self._session.request(
                method, url, params=params, headers=self._headers, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    raise await _error(resp, context)
                return await handle(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise LogsApiError(
                message, error_type="connection_error", retryable=True, context=context
            ) from None

    async def _call(
        self,
        method: str,
        path: str,
        handle: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        params: dict[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> T:
        """One API call with the retry policy; the final error carries the number of attempts."""
        attempts = 0
        try:
            async for attempt in self._retrying.copy():
                attempts = attempt.retry_state.attempt_number
                with attempt:
                    return await self._once(method, path, handle, params, timeout or self._timeout)
        except LogsApiError as exc:
            exc.attempts = attempts
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _json(
        self, method: str, path: str, key: str = "log_request", params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        async def handle(resp: aiohttp.ClientResponse) -> dict[str, Any]:
            try:
                return dict((await resp.json(content_type=None))[key])
            except (ValueError, KeyError, TypeError) as exc:
                raise LogsApiError(f"unexpected response, no {key!r}", context=f"{method} {path}") from exc

        return await self._call(method, path, handle, params)

    async def evaluate(self, day: date, source: str, fields: Sequence[str]) -> dict[str, Any]:
        params = _query(day, source, fields)
        return await self._json("GET", "/logrequests/evaluate", "log_request_evaluation", params)

    async def create(self, day: date, source: str, fields: Sequence[str]) -> dict[str, Any]:
        return await self._json("POST", "/logrequests", params=_query(day, source, fields))

    async def info(self, request_id: int) -> dict[str, Any]:
        return await self._json("GET", f"/logrequest/{request_id}")

    async def cancel(self, request_id: int) -> dict[str, Any]:
        return await self._json("POST", f"/logrequest/{request_id}/cancel")

    async def clean(self, request_id: int) -> dict[str, Any]:
        return await self._json("POST", f"/logrequest/{request_id}/clean")

    async def download(
        self, day: date, source: str, fields: Sequence[str], dest: Path, on_stage: StageCallback | None = None
    ) -> list[Path]:
        """Export one day of ``source`` into ``dest/{source}_{n}.tsv`` (TabSeparatedWithNames per part).

        The log request is always cleaned (or canceled while still ``created``) afterwards, also on
        errors and cancellation. Files of an earlier export with the same names are replaced."""
        if source not in SOURCES or not fields:
            raise ValueError(f"source must be one of {sorted(SOURCES)} and fields non-empty, got {source!r}")
        await _report(on_stage, "evaluate", 0.0)
        evaluation = await self.evaluate(day, source, fields)
        if not evaluation.get("possible", False):
            quantity = evaluation.get("max_possible_day_quantity")
            raise LogsApiQuotaError(
                f"Logs API quota: cannot prepare {source} for {day}: evaluate says possible=false, "
                f"max_possible_day_quantity={quantity}; clean old log requests of counter {self.counter}",
                error_type="quota_logs_storage",
                context="evaluate",
            )
        await _report(on_stage, "evaluate", 1.0)
        job = _Job(int((await self.create(day, source, fields))["request_id"]))
        log.info("counter %s: log request %s for %s %s created", self.counter, job.request_id, source, day)
        try:
            info = await self._wait(job, on_stage)
            return await self._download_parts(job, info, source, dest, on_stage)
        finally:
            await self._release(job)

    async def _wait(self, job: _Job, on_stage: StageCallback | None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started, delay = loop.time(), self.poll_initial
        while True:
            await _report(on_stage, "prepare", (elapsed := loop.time() - started) / (elapsed + 60.0))
            info = await self.info(job.request_id)
            job.status = str(info.get("status"))
            if job.status == "processed":
                await _report(on_stage, "prepare", 1.0)
                return info
            if job.status in FAILED:
                raise LogsApiError(
                    f"log request {job.request_id} ended as {job.status}", error_type=job.status
                )
            remaining = self.prepare_timeout - (loop.time() - started)
            if remaining <= 0:
                raise LogsApiError(
                    f"log request {job.request_id} still {job.status} after {self.prepare_timeout:.0f}s"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, self.poll_max)

    async def _download_parts(
        self, job: _Job, info: dict[str, Any], source: str, dest: Path, on_stage: StageCallback | None
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
                    with tmp.open("wb") as out:
                        async for chunk in resp.content.iter_chunked(self.chunk_size):
                            out.write(chunk)
                            done[number] += len(chunk)
                            await _report(on_stage, "download", sum(done.values()) / total)

                path = f"/logrequest/{job.request_id}/part/{number}/download"
                await self._call("GET", path, handle, timeout=self._stream_timeout)
                tmp.replace(target)
                paths.append(target)
        except BaseException:
            for leftover in dest.iterdir():
                if ours.match(leftover.name):
                    leftover.unlink(missing_ok=True)
            raise
        if not parts:
            log.warning("log request %s is processed but lists no parts", job.request_id)
        await _report(on_stage, "download", 1.0)
        log.info(
            "log request %s: %d parts, %d bytes downloaded", job.request_id, len(paths), sum(done.values())
        )
        return paths

    async def _release(self, job: _Job) -> None:
        """Free Yandex's storage: cancel a request still being prepared, clean a prepared one."""
        try:
            if job.status in ("created", "awaiting_retry"):
                try:
                    job.status = str((await self.cancel(job.request_id)).get("status"))
                    return
                except LogsApiError as exc:
                    if exc.status != 400:
                        raise
                    log.info(
                        "log request %s could not be canceled (%s), cleaning it", job.request_id, exc.message
                    )
            if job.status not in FAILED - {"processing_failed"}:
                job.status = str((await self.clean(job.request_id)).get("status"))
        except LogsApiError as exc:
            log.warning("log request %s left on Yandex's side (%s): %s", job.request_id, job.status, exc)


def _log_retry(state: tenacity.RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action else 0.0
    error = state.outcome.exception() if state.outcome else None
    log.warning("%s (attempt %d), retrying in %.2fs", error, state.attempt_number, wait)


def _query(day: date, source: str, fields: Sequence[str]) -> dict[str, str]:
    return {"date1": day.isoformat(), "date2": day.isoformat(), "source": source, "fields": ",".join(fields)}
