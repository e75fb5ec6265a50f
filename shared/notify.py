"""The notification sender: POSTs each finished task's or batch's signed summary to its callback URL.

Rows come from shared/db/notifications.py, written in the transaction that wrote the final state. Every
scorer and uploader runs a sender; replicas share the rows (claimed with FOR UPDATE SKIP LOCKED for longer
than an attempt may take). A failed attempt is tried again after a backoff kept in Postgres
(next_attempt_at), for up to NOTIFY_HORIZON_S; a receiver may get a summary twice only if its answer is
lost, and can tell by the X-Metrika-Score-Delivery header.

The body is signed as Stripe signs its webhooks: HMAC-SHA256 over "<unix time>." + the raw body, sent as
`X-Metrika-Score-Signature: t=<unix time>,v1=<hex>`. Redirects are never followed, and outside development
a target that resolves to a private, loopback or link-local address is refused (NOTIFY_ALLOW_PRIVATE).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult

from shared import errors, metrika
from shared.db import notifications
from shared.settings import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Metrika-Score-Signature"
DELIVERY_HEADER = "X-Metrika-Score-Delivery"
EVENT_HEADER = "X-Metrika-Score-Event"
# notifications claimed per pass, and sent side by side
BATCH = 16
# the summary's keys in the order a reader expects (jsonb keeps its own order)
_ORDER = ("event", "id", "counter", "status", "counts", "failed_rows", "finished_at")
# the receiver's answer kept in last_error, at most this long
_MAX_ERROR_CHARS = 300


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def encode(body: dict[str, Any]) -> bytes:
    """The bytes sent (and signed): the summary's keys in _ORDER, then the rest."""
    ordered = {key: body[key] for key in _ORDER if key in body} | body
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":")).encode()


class Refused(OSError):
    """The target resolves only to addresses a notification may not go to."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicResolver(AbstractResolver):
    """Resolves as usual, then keeps only public addresses: the connection goes to an address checked
    here, so a name that resolves differently a moment later (DNS rebinding) cannot reach inside."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [entry for entry in found if _public(entry["host"])]
        if not public:
            raise Refused(f"{host} resolves only to private or loopback addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


def check_target(url: str) -> None:
    """Refuse a private or loopback IP literal (aiohttp does not resolve those; names go through
    PublicResolver)."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return  # a name
    if not _public(host):
        raise Refused(f"{host} is a private or loopback address")


class Sender:
    """Sends due notifications; `run` until stopped, or `send_due` once (tests, one-off runs)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._key = settings.notify_signing_key.get_secret_value().encode()
        # an attempt takes at most the timeout; the claim outlasts it, so no other sender takes the row
        self._lease_s = settings.notify_timeout_s + 30.0

    async def run(self, stop: asyncio.Event) -> None:
        async with self._session() as session:
            while not stop.is_set():
                sent = 0
                try:
                    sent = await self.send_due(session)
                except Exception as exc:
                    log = logger.warning if errors.is_unavailable(exc) else logger.exception
                    log("notifications: %s", exc)
                if sent < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._settings.notify_interval_s)

    def _session(self) -> aiohttp.ClientSession:
        resolver = None if self._settings.notify_allow_private else PublicResolver()
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=BATCH),
            timeout=aiohttp.ClientTimeout(total=self._settings.notify_timeout_s),
        )

    async def send_due(self, session: aiohttp.ClientSession | None = None) -> int:
        """Claim the due notifications and attempt each once; how many were attempted."""
        due = await notifications.claim_due(self._pool, BATCH, self._lease_s)
        if not due:
            return 0
        if session is None:
            async with self._session() as own:
                await asyncio.gather(*(self._attempt(own, row) for row in due))
        else:
            await asyncio.gather(*(self._attempt(session, row) for row in due))
        return len(due)

    async def _attempt(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> None:
        error = await self._post(session, row)
        settings = self._settings
        if error is None:
            await notifications.delivered(self._pool, row["id"])
            logger.info("notification %s (%s %s) delivered", row["id"], row["kind"], row["subject_id"])
            return
        delay = metrika.backoff_s(
            row["attempts"] + 1, base_s=settings.notify_retry_base_s, max_s=settings.notify_retry_max_s
        )
        status = await notifications.failed_attempt(
            self._pool, row["id"], error, delay, settings.notify_horizon_s
        )
        # the host only: a callback URL may carry a token in its path or query
        host = urlsplit(row["url"]).hostname
        if status == "failed":
            logger.warning("notification %s to %s given up after %s attempts: %s", row["id"], host,
                           row["attempts"] + 1, error)  # fmt: skip
        else:
            logger.info("notification %s to %s failed (%s); next in %.0f s", row["id"], host, error, delay)

    async def _post(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> str | None:
        """None once the receiver answered 2xx; else why not (kept, shown and logged: never the URL itself,
        whose path or query may carry the receiver's token)."""
        error = await self._try_post(session, row)
        if error is None:
            return None
        return error.replace(row["url"], f"<{urlsplit(row['url']).hostname}>")[:_MAX_ERROR_CHARS]

    async def _try_post(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> str | None:
        body = encode(row["body"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "metrika-score",
            SIGNATURE_HEADER: sign(self._key, body, int(time.time())),
            DELIVERY_HEADER: str(row["id"]),
            EVENT_HEADER: str(row["body"].get("event", "")),
        }
        try:
            if not self._settings.notify_allow_private:
                check_target(row["url"])
            async with session.post(row["url"], data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return None
                if 300 <= resp.status < 400:
                    where = urlsplit(resp.headers.get("Location", "")).hostname or "the same host"
                    return f"HTTP {resp.status}: redirects are not followed (to {where})"
                text = (await resp.text(errors="replace"))[:_MAX_ERROR_CHARS].strip()
                return f"HTTP {resp.status}" + (f": {text}" if text else "")
        except Refused as exc:
            return f"refused: {exc}"
        except TimeoutError:
            return f"no answer within {self._settings.notify_timeout_s:g} s"
        except aiohttp.ClientError as exc:
            cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
            return f"{type(cause).__name__}: {cause}"[:_MAX_ERROR_CHARS]
