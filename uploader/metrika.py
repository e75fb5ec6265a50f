"""Async client of Metrika's offline-conversions management API (upload, uploading status, goals)."""

from __future__ import annotations

import logging
import random
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

logger = logging.getLogger(__name__)

ID_COLUMNS = {"CLIENT_ID": "ClientId", "USER_ID": "UserId", "YCLID": "Yclid"}


class MetrikaError(Exception):
    """A refusal or failure of Metrika's API; `message` is Metrika's own text when it sent one."""

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.error_type = message, status, error_type
        self.attempts = 1

    @property
    def retryable(self) -> bool:
        """429, 5xx, timeouts and connection errors are worth another try; other 4xx are final."""
        return self.status is None or self.status == 429 or self.status >= 500

    def __str__(self) -> str:
        http = f"HTTP {self.status} " if self.status else ""
        kind = f"{self.error_type}: " if self.error_type else ""
        tries = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"Metrika {http}{kind}{self.message}{tries}"


class MetrikaClient:
    """One counter's offline-conversion calls; the token goes only into the Authorization header."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        counter: int,
        *,
        attempts: int = 6,
        backoff_max_s: float = 60.0,
        timeout_s: float = 120.0,
    ) -> None:
        self._session = session
        self._headers = {"Authorization": f"OAuth {token}"}
        self._base = f"{base_url.rstrip('/')}/management/v1/counter/{counter}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.attempts = attempts
        self.backoff_max_s = backoff_max_s

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry number `attempt` (1-based), capped."""
        initial = min(1.0, self.backoff_max_s)
        return float(min(self.backoff_max_s, initial * 2 ** (attempt - 1)) + random.uniform(0, initial))

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call, no retry: the parsed JSON body, or MetrikaError."""
        try:
            async with self._session.request(
                method, self._base + path, headers=self._headers, timeout=self._timeout, **kwargs
            ) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else None
                if resp.status >= 400:
                    raise _error(resp.status, body)
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise MetrikaError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call retried on 429/5xx/timeouts with exponential backoff and jitter, up to `attempts`."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(initial=min(1.0, self.backoff_max_s), max=self.backoff_max_s),
            retry=retry_if_exception(lambda exc: isinstance(exc, MetrikaError) and exc.retryable),
            reraise=True,
        )
        attempt_number = 0
        try:
            async for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    return await self.request(method, path, **kwargs)
        except MetrikaError as exc:
            exc.attempts = attempt_number
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def upload(self, id_type: str, csv_bytes: bytes, comment: str) -> dict[str, Any]:
        """POST one CSV file (no retry here: the caller checks whether a lost attempt arrived first)."""
        form = aiohttp.FormData()
        form.add_field("file", csv_bytes, filename="conversions.csv", content_type="text/csv")
        params = {"client_id_type": id_type, "comment": comment}
        body = await self.request("POST", "/offline_conversions/upload", params=params, data=form)
        return dict(body["uploading"])

    async def uploading(self, upload_id: str) -> dict[str, Any]:
        body = await self.call("GET", f"/offline_conversions/uploading/{upload_id}")
        return dict(body["uploading"])

    async def find_by_comment(self, comment: str, page: int = 1000) -> dict[str, Any] | None:
        """The newest upload of this counter carrying `comment`, if Metrika has one."""
        offset, found = 0, None
        while True:
            body = await self.call(
                "GET", "/offline_conversions/uploadings", params={"limit": page, "offset": offset}
            )
            items = body.get("uploadings") or []
            for item in items:
                if item.get("comment") == comment:
                    found = dict(item)
            if len(items) < page:
                return found
            offset += page

    async def goal_targets(self) -> set[str]:
        """Identifiers a CSV `Target` may use: the exact-match conditions of the counter's action goals."""
        body = await self.call("GET", "/goals")
        targets: set[str] = set()
        for goal in body.get("goals") or []:
            for condition in goal.get("conditions") or []:
                if condition.get("type") == "exact" and condition.get("url"):
                    targets.add(str(condition["url"]))
        return targets


def _error(status: int, body: Any) -> MetrikaError:
    message, error_type = f"HTTP {status}", None
    if isinstance(body, dict):
        message = str(body.get("message") or message)
        first = (body.get("errors") or [{}])[0]
        error_type = first.get("error_type") if isinstance(first, dict) else None
    return MetrikaError(message, status=status, error_type=error_type)
