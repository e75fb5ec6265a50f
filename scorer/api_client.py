"""A small blocking HTTP client of the gateway's API, for the command line (scorer.api_cli).

Standard library only: it talks HTTP to a running gateway and imports nothing of the services. Every
failure is an ApiError whose message is fit to show a user: it never carries the API key."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

TIMEOUT_S = 30.0
PAGE_LIMIT = 1000  # the most a listing gives per request


class ApiError(Exception):
    """A request that failed: `status` is the HTTP status, or None when the gateway was not reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    def __init__(self, base_url: str, api_key: str, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s

    def __repr__(self) -> str:  # never the key
        return f"ApiClient({self.base_url!r})"

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body)

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        """The answer's JSON (None for an empty answer); an ApiError for anything but a 2xx."""
        url = self.base_url + path
        given = {k: v for k, v in (params or {}).items() if v is not None}
        if given:
            url += "?" + urllib.parse.urlencode(given)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._api_key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(_http_problem(exc), exc.code) from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach the gateway at {self.base_url}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise ApiError(
                f"the gateway at {self.base_url} did not answer within {self._timeout_s:g} s"
            ) from None
        except (ConnectionError, OSError) as exc:
            raise ApiError(f"cannot reach the gateway at {self.base_url}: {_reason(exc)}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(
                f"{method} {path}: the answer is not JSON (is {self.base_url} the gateway?)"
            ) from None

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a paginated listing, PAGE_LIMIT items at a time."""
        offset = 0
        while True:
            page = self.get(path, {**(params or {}), "limit": PAGE_LIMIT, "offset": offset})
            yield page
            offset += len(page["data"])
            if not page["pagination"]["has_more"] or not page["data"]:
                return


def _reason(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is it running? check --url / METRIKA_SCORE_URL)"
    if isinstance(reason, socket.gaierror):
        return "unknown host (check --url / METRIKA_SCORE_URL)"
    return str(getattr(reason, "strerror", None) or reason)


def _http_problem(exc: urllib.error.HTTPError) -> str:
    """`<status> <reason>: <the gateway's detail>`, with a hint for a missing or wrong API key."""
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if isinstance(detail, list):  # 422: a list of {"loc", "msg"}
        detail = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    text = f"{exc.code} {exc.reason}" + (f": {detail}" if detail else "")
    if exc.code == 401:
        text += " (check --api-key / METRIKA_SCORE_API_KEY)"
    return text
