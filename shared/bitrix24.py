"""A Bitrix24 REST client for enrichment: ``crm.deal.get`` / ``crm.lead.get`` through a portal's
inbound-webhook URL (``https://<portal>/rest/<user_id>/<code>/``), paced per portal and retried on
``QUERY_LIMIT_EXCEEDED``, 5xx and timeouts.

The webhook code is a password to the portal: it is only ever put in the request URL, never in a log
line, an exception message or a repr (those name the portal host only).

Bitrix24's formats (bitrix24/b24restdocs): success ``{"result": {...}, "time": {...}}``; failure
``{"error": "<CODE or empty>", "error_description": "..."}``, e.g. 503 ``QUERY_LIMIT_EXCEEDED``, 401
``INVALID_CREDENTIALS``, 400 ``{"error": "", "error_description": "Not found"}``. The limit is a leaky
bucket per portal (+1 a request, drains 2 a second, refuses past 50): a caller at 2 requests/s never
meets it (https://apidocs.bitrix24.com/limits.html).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.metrika import backoff_policy, retry_after_s

__all__ = ["Bitrix24Client", "Bitrix24Error", "PortalPacer", "pacer_for"]

logger = logging.getLogger(__name__)

_WEBHOOK_PATH = re.compile(r"^(?P<prefix>.*?/rest/)(?P<user>\d+)/(?P<code>[^/]+)/?$")
#: error codes that pass with time (besides any 5xx, timeouts and connection errors)
_PASSING = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"})


class Bitrix24Error(Exception):
    """A refusal or failure of a Bitrix24 REST call.

    `error` is Bitrix24's code (may be empty: CRM methods send "Not found" with an empty code),
    `description` its `error_description`, `status` the HTTP status (None: timeout or connection error).
    The message names the method and the portal host, never the webhook URL.
    """

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int | None,
        context: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.context, self.retry_after = context, retry_after
        self.attempts = 1

    @property
    def retryable(self) -> bool:
        """The request limit, 5xx, timeouts and connection errors pass with time; other answers are final."""
        return self.status is None or self.status >= 500 or self.status == 429 or self.error in _PASSING

    @property
    def not_found(self) -> bool:
        return self.error == "NOT_FOUND" or (self.status == 400 and self.description == "Not found")

    def __str__(self) -> str:
        where = f"{self.context}: " if self.context else ""
        http = f"HTTP {self.status} " if self.status is not None else ""
        code = f"{self.error}: " if self.error else ""
        tries = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"Bitrix24 {where}{http}{code}{self.description}{tries}"


class PortalPacer:
    """A token bucket for one portal: `rate` requests a second, at most `burst` at once. Each caller
    reserves its slot at once (no lock, so any number of event loops and tasks can share it) and sleeps
    until the slot comes."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, max(1, burst)
        self._tokens, self._updated = float(self.burst), time.monotonic()

    def reserve(self) -> float:
        """Take one token; the seconds to wait before using it (0: now)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate) - 1
        self._updated = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def refused(self) -> None:
        """The portal said QUERY_LIMIT_EXCEEDED: someone else shares its bucket; give up any saved burst."""
        self._tokens = min(self._tokens, 0.0)


# One pacer per portal host for this process, whatever the number of clients or webhooks on it.
# Bitrix24 counts per portal and caller IP, so replicas of a consumer share the portal's budget: a limit
# held across replicas (Postgres or RabbitMQ) is left for issue 12; until then each replica paces itself
# and QUERY_LIMIT_EXCEEDED is retried.
_PACERS: dict[str, PortalPacer] = {}


def pacer_for(host: str, rate: float, burst: int = 1) -> PortalPacer:
    """The process-wide pacer of `host`; the latest rate and burst asked for apply."""
    pacer = _PACERS.get(host)
    if pacer is None:
        pacer = _PACERS[host] = PortalPacer(rate, burst)
    else:
        pacer.rate, pacer.burst = rate, max(1, burst)
    return pacer


class Bitrix24Client:
    """Reads of one portal through its inbound webhook. `rps` paces every call (retries included) on the
    portal's process-wide pacer; `attempts` tries per call with backoff up to `backoff_max_s`; each
    attempt is bounded by `timeout_s`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        webhook_url: str,
        *,
        rps: float = 2.0,
        burst: int = 1,
        attempts: int = 5,
        backoff_max_s: float = 10.0,
        timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(webhook_url.strip())
        match = _WEBHOOK_PATH.match(parts.path)
        if parts.scheme not in ("http", "https") or not parts.netloc or match is None or parts.query:
            # the URL holds the secret code: never echo it
            raise ValueError(
                "a Bitrix24 inbound-webhook URL looks like https://<portal>/rest/<user_id>/<code>/"
            )
        self._session = session
        self._base = f"{parts.scheme}://{parts.netloc}{match['prefix']}{match['user']}/{match['code']}/"
        self._code = match["code"]
        self.host = parts.netloc
        self._pacer = pacer_for(self.host, rps, burst)
        self.attempts, self.backoff_max_s = attempts, backoff_max_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r})"

    async def deal(self, deal_id: int | str) -> dict[str, Any]:
        """``crm.deal.get``: the deal's fields (ID, TITLE, STAGE_ID, OPPORTUNITY, CURRENCY_ID, DATE_MODIFY,
        CONTACT_ID, UF_CRM_*, ...), values as Bitrix24 sends them (mostly strings)."""
        return await self.call("crm.deal.get", {"id": _positive_id(deal_id)})

    async def lead(self, lead_id: int | str) -> dict[str, Any]:
        """``crm.lead.get``: the lead's fields (ID, STATUS_ID, OPPORTUNITY, CURRENCY_ID, DATE_MODIFY,
        UF_CRM_*, ...)."""
        return await self.call("crm.lead.get", {"id": _positive_id(lead_id)})

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """`send` under the retry policy; the final error carries the number of attempts."""
        attempts = 0
        try:
            async for attempt in backoff_policy(self.attempts, self.backoff_max_s, _retryable):
                attempts = attempt.retry_state.attempt_number
                with attempt:
                    return await self.send(method, params)
        except Bitrix24Error as exc:
            exc.attempts = attempts
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One paced call, no retry: the ``result`` object, or Bitrix24Error."""
        context = f"{method} on {self.host}"
        await self._pacer.wait()
        try:
            async with self._session.post(
                f"{self._base}{method}.json", json=params, timeout=self.timeout
            ) as resp:
                status, retry_after = resp.status, retry_after_s(resp.headers.get("Retry-After"))
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            text = f"{type(exc).__name__}: {exc}".rstrip(": ").replace(self._code, "***")
            raise Bitrix24Error("", text, status=None, context=context) from None
        result = body.get("result") if isinstance(body, dict) else None
        if status < 400 and isinstance(result, dict):
            return result
        if isinstance(body, dict) and "error" in body:
            error = Bitrix24Error(
                str(body.get("error") or ""),
                str(body.get("error_description") or ""),
                status=status,
                context=context,
                retry_after=retry_after,
            )
        else:  # a proxy's page, or a 2xx that is not Bitrix24's envelope
            error = Bitrix24Error(
                "ERROR_UNEXPECTED_ANSWER",
                "the answer is not Bitrix24's JSON envelope",
                status=status if status >= 400 else 502,
                context=context,
                retry_after=retry_after,
            )
        if error.error == "QUERY_LIMIT_EXCEEDED":
            self._pacer.refused()
        raise error


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Bitrix24Error) and exc.retryable


def _positive_id(value: int | str) -> int:
    text = str(value).strip() if not isinstance(value, bool) else ""
    if not text.isdigit() or int(text) <= 0:
        raise ValueError("a Bitrix24 id is a positive integer")
    return int(text)
