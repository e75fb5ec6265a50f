"""What the uploader's handler and poller need, built once in main()."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import asyncpg

from shared.crypto import TokenCipher
from uploader.metrika import MetrikaClient


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    cipher: TokenCipher
    api_url: str
    retry_attempts: int
    retry_max_s: float
    poll_interval_s: float
    processing_timeout_s: float

    def client(self, token_enc: bytes, counter: int) -> MetrikaClient:
        return MetrikaClient(
            self.session,
            self.api_url,
            self.cipher.decrypt(token_enc),
            counter,
            attempts=self.retry_attempts,
            backoff_max_s=self.retry_max_s,
        )
