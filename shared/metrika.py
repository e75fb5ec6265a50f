"""The one base of every Metrika API call (Logs API and offline-conversions management API): one error
class, one timeout per call, one retry policy, one durable backoff."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import tenacity

from shared import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
Handle = Callable[[aiohttp.ClientResponse], Awaitable[T]]
# the error_type of "every slot of this counter stayed busy" (shared/db/slots.py): retryable, but durably
# (the work is given back), never by waiting again in process
COUNTER_BUSY = "counter_busy"
# the error_type of "the log request is still being prepared": the task gives its turn back and polls the
# same request again on its next attempt (scorer/logs_api.py PrepareHold)
PREPARING = "preparing"


class MetrikaError(Exception):
    """A refusal or failure of a Metrika API; `message` is Yandex's own text when it sent one.

    `status` is None for a timeout or a connection error. `retry_after` is the server's `Retry-After`
    in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        context: str = "",
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.error_type = message, status, error_type
        self.retry_after, self.context = retry_after, context
        self.attempts = 1

    @property
    def retryable(self) -> bool:
        """429, 5xx, timeouts and connection errors pass with time; other 4xx are final answers."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def quota(self) -> bool:
        return self.status == 429 or bool(self.error_type and self.error_type.startswith("quota"))

    def __str__(self) -> str:
        where = f"{self.context}: " if self.context else ""
        http = f"HTTP {self.status} " if self.status is not None else ""
        kind = f"{self.error_type}: " if self.error_type else ""
        tries = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"Metrika {where}{http}{kind}{self.message}{tries}"


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def backoff_s(attempt: int, *, base_s: float, max_s: float, retry_after: float | None = None) -> float:
    """The delay before retry number `attempt` (1-based): exponential, capped, with full jitter on its
    upper half; never shorter than the server's `Retry-After`."""
    ceiling = float(min(max_s, base_s * 2.0 ** min(attempt - 1, 30)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


class _WaitBackoff(tenacity.wait.wait_base):
    """tenacity's wait: `backoff_s` of the attempt, honouring the last error's `retry_after` (seconds), if
    it has one."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self.base_s, self.max_s = base_s, max_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after: float | None = getattr(exc, "retry_after", None)
        if retry_after is not None:
            retry_after = min(retry_after, self.max_s)
        return backoff_s(
            retry_state.attempt_number, base_s=self.base_s, max_s=self.max_s, retry_after=retry_after
        )


def _log_retry(state: tenacity.RetryCallState) -> None:
    wait = state.next_action.sleep if state.next_action else 0.0
    error = state.outcome.exception() if state.outcome else None
    logger.warning("%s (attempt %d), retrying in %.2fs", error, state.attempt_number, wait)


def retryable(error: MetrikaError) -> bool:
    return error.retryable and error.error_type != COUNTER_BUSY


def backoff_policy(
    attempts: int, max_s: float, retry_if: Callable[[BaseException], bool]
) -> tenacity.AsyncRetrying:
    """The in-process retry of any outside API call (Metrika, a CRM): exceptions `retry_if` accepts,
    `attempts` tries, `backoff_s` up to `max_s` (never shorter than the error's `retry_after`), each retry
    logged with the error's own text (so that text must never hold a secret)."""
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=_WaitBackoff(min(1.0, max_s), max_s),
        retry=tenacity.retry_if_exception(retry_if),
        before_sleep=_log_retry,
        reraise=True,
    )


def retry_policy(
    attempts: int, max_s: float, retry_on: Callable[[MetrikaError], bool] = retryable
) -> tenacity.AsyncRetrying:
    """The in-process policy of every Metrika call: errors `retry_on` accepts (default: the retryable
    ones), `attempts` tries, backoff up to `max_s`. Longer outages are the caller's to schedule durably
    (a next attempt time in Postgres)."""
    return backoff_policy(attempts, max_s, lambda e: isinstance(e, MetrikaError) and retry_on(e))


async def _json_body(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None) if resp.content_length != 0 else None


class MetrikaApi:
    """One counter's calls to `{base_url}/management/v1/counter/{counter}`; the OAuth token goes only into
    the Authorization header and never into a message or a log line. Every call is counted by `api` (a
    subclass names its own) and outcome (shared.metrics)."""

    api = "management"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        counter: int,
        *,
        attempts: int = 6,
        backoff_max_s: float = 60.0,
        timeout_s: float = 60.0,
    ) -> None:
        self._session = session
        self._headers = {"Authorization": f"OAuth {token}"}
        self.counter = counter
        self.base_url = f"{base_url.rstrip('/')}/management/v1/counter/{counter}"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.attempts, self.backoff_max_s = attempts, backoff_max_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}(counter={self.counter}, base_url={self.base_url!r})"

    async def send(
        self,
        method: str,
        path: str,
        handle: Handle[T] | None = None,
        *,
        timeout: aiohttp.ClientTimeout | None = None,
        **kwargs: Any,
    ) -> T | Any:
        """One call, no retry: `handle(response)` of a 2xx (default: its JSON body), else MetrikaError."""
        started, outcome = time.perf_counter(), "ok"
        try:
            return await self._send(method, path, handle, timeout=timeout, **kwargs)
        except MetrikaError as exc:
            outcome = _outcome(exc)
            raise
        finally:
            metrics.METRIKA_CALLS.labels(self.api, outcome).inc()
            metrics.METRIKA_DURATION.labels(self.api).observe(time.perf_counter() - started)

    async def _send(
        self,
        method: str,
        path: str,
        handle: Handle[T] | None,
        *,
        timeout: aiohttp.ClientTimeout | None,
        **kwargs: Any,
    ) -> T | Any:
        context = f"{method} {path.split('?', 1)[0]}"
        try:
            async with self._session.request(
                method, self.base_url + path, headers=self._headers, timeout=timeout or self.timeout, **kwargs
            ) as resp:
                if resp.status >= 400:
                    raise await _error(resp, context)
                return await (handle or _json_body)(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise MetrikaError(message, error_type="connection_error", context=context) from None
        except ValueError as exc:  # a 2xx whose body is not the JSON promised
            raise MetrikaError(f"unreadable answer: {exc}", status=502, context=context) from None

    async def call(
        self,
        method: str,
        path: str,
        handle: Handle[T] | None = None,
        *,
        timeout: aiohttp.ClientTimeout | None = None,
        retry_on: Callable[[MetrikaError], bool] = retryable,
        **kwargs: Any,
    ) -> T | Any:
        """`send` under the retry policy; the final error carries the number of attempts."""
        attempts = 0
        try:
            async for attempt in retry_policy(self.attempts, self.backoff_max_s, retry_on):
                attempts = attempt.retry_state.attempt_number
                with attempt:
                    return await self.send(method, path, handle, timeout=timeout, **kwargs)
        except MetrikaError as exc:
            exc.attempts = attempts
            raise
        raise AssertionError("unreachable")  # pragma: no cover


def _outcome(error: MetrikaError) -> str:
    if error.status is None:
        return "timeout" if "Timeout" in error.message else "connection_error"
    if error.status == 429:
        return "rate_limited"
    return "server_error" if error.status >= 500 else "client_error"


async def _error(resp: aiohttp.ClientResponse, context: str) -> MetrikaError:
    """Yandex's error envelope (`errors[0].error_type/message`, `message`) as a MetrikaError."""
    text = await resp.text(errors="replace")
    error_type, message = None, text.strip()[:300] or resp.reason or f"HTTP {resp.status}"
    try:
        body = await resp.json(content_type=None)
        first = (body.get("errors") or [{}])[0]
        error_type = first.get("error_type") if isinstance(first, dict) else None
        message = (
            (first.get("message") if isinstance(first, dict) else None) or body.get("message") or message
        )
    except (ValueError, AttributeError, IndexError, TypeError):
        pass
    return MetrikaError(
        str(message),
        status=resp.status,
        error_type=error_type,
        retry_after=retry_after_s(resp.headers.get("Retry-After")),
        context=context,
    )
