"""What the sandbox tests share: calling the sandbox and checking Yandex's error envelope."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

TOKEN = "sandbox-token"
AUTH = {"Authorization": f"OAuth {TOKEN}"}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any]:
    """(status, parsed JSON body or the raw text), authenticated with the sandbox token by default."""
    async with http.request(method, url, headers=AUTH if headers is None else headers, **kw) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


def assert_error(
    status: int, body: Any, code: int, error_type: str, message: str | None = None, *, exact: bool = True
) -> None:
    """Yandex's envelope: `code` repeats the status and the top `message` is the first error's."""
    assert status == code, body
    assert body["code"] == code
    assert body["errors"][0]["error_type"] == error_type
    assert body["message"] == body["errors"][0]["message"]
    if message is not None:
        if exact:
            assert body["message"] == message
        else:
            assert message in body["message"], body["message"]
