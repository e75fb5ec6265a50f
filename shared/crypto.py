"""Encryption at rest for the Metrika OAuth tokens users hand us, and re-encryption under a new key.

TOKEN_ENCRYPTION_KEY holds one or more comma-separated keys: the first encrypts, every one decrypts
(Fernet: AES-128-CBC + HMAC-SHA256, through MultiFernet). A key is rotated by putting the new one first,
running `metrika-score rekey` (every stored token re-encrypted under the first key), then dropping the old.

Each key is either a Fernet key (32 url-safe base64 bytes, as `Fernet.generate_key()` prints), used as it
is, or any other string, stretched into one with scrypt (n=2**15, r=8, p=1, a fixed salt: there is no
place to keep a per-deployment one): a guessable passphrase then costs whoever holds the database about
0.1 s of CPU and 32 MB per guess.

Tokens stored before this used SHA-256 of the configured string as their Fernet key. So that existing
deployments keep their tokens, every configured key also decrypts (never encrypts) under that old
derivation; `metrika-score rekey` moves such tokens to the first key's proper one.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
import sys
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from shared import db, errors
from shared.db import tokens
from shared.settings import Settings

_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")
_SCRYPT_SALT = b"metrika-score TOKEN_ENCRYPTION_KEY v2"
_SCRYPT_N = 2**15


def parse_keys(secret: SecretStr) -> list[str]:
    return [key.strip() for key in secret.get_secret_value().split(",") if key.strip()]


class TokenCipher:
    def __init__(self, secret: SecretStr) -> None:
        keys = parse_keys(secret)
        if not keys:
            raise ValueError("TOKEN_ENCRYPTION_KEY is empty: no key to encrypt tokens with")
        self._current = _fernet(keys[0])
        # the proper keys first, so rotate() and is_current() agree on the one that encrypts
        self._fernet = MultiFernet([self._current, *map(_fernet, keys[1:]), *map(_legacy_fernet, keys)])

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str:
        """The token; errors.Permanent (a message never to be processed) if no configured key opens it."""
        token = self.decrypt_or_none(blob)
        if token is None:
            raise errors.Permanent(
                "stored Metrika token cannot be decrypted: it was stored under a key TOKEN_ENCRYPTION_KEY no "
                "longer lists"
            )
        return token

    def decrypt_or_none(self, blob: bytes) -> str | None:
        """The token, or None if no configured key opens it (for a caller with another token to use)."""
        try:
            return self._fernet.decrypt(bytes(blob)).decode()
        except InvalidToken:
            return None

    def is_current(self, blob: bytes) -> bool:
        """True if `blob` is encrypted under the first key (nothing to re-encrypt)."""
        try:
            self._current.decrypt(bytes(blob))
        except InvalidToken:
            return False
        return True

    def rotate(self, blob: bytes) -> bytes:
        """`blob` re-encrypted under the first key; InvalidToken if no configured key opens it."""
        return self._fernet.rotate(bytes(blob))


@functools.lru_cache(maxsize=16)  # scrypt takes ~0.1 s: once per key and process
def _fernet(key: str) -> Fernet:
    if _FERNET_KEY.fullmatch(key):
        return Fernet(key)
    derived = hashlib.scrypt(
        key.encode(), salt=_SCRYPT_SALT, n=_SCRYPT_N, r=8, p=1, dklen=32, maxmem=64 * 1024 * 1024
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _legacy_fernet(key: str) -> Fernet:
    """The derivation of tokens stored before scrypt (SHA-256 of the string): decrypts old rows only."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


@dataclass
class RekeyReport:
    rekeyed: dict[str, int] = field(default_factory=dict)  # per table
    current: int = 0  # already under the first key
    unreadable: int = 0  # under no configured key: left as they are


async def rekey(pool: db.Executor, cipher: TokenCipher, page: int = 500) -> RekeyReport:
    """Re-encrypt every stored token (tasks, batches, webhooks, and a Bitrix24 webhook's application token
    and portal URL) under the first key. Safe to run while the services run and to run again: a row is
    replaced only if it still holds what was read."""
    report = RekeyReport()
    for table, column in tokens.COLUMNS:
        report.rekeyed.setdefault(table, 0)
        rotated: dict[bytes, bytes] = {}  # batches copy their webhook's token: one re-encryption each
        after = tokens.FIRST_ID
        while rows := await tokens.page(pool, table, after, page, column):
            after = rows[-1]["id"]
            changes: list[tuple[object, bytes, bytes]] = []
            for row in rows:
                blob = bytes(row["token_enc"])
                if cipher.is_current(blob):
                    report.current += 1
                    continue
                if blob not in rotated:
                    try:
                        rotated[blob] = cipher.rotate(blob)
                    except InvalidToken:
                        report.unreadable += 1
                        continue
                changes.append((row["id"], blob, rotated[blob]))
            report.rekeyed[table] += await tokens.replace(pool, table, changes, column)
    return report


def run_rekey(settings: Settings) -> int:
    """`metrika-score rekey`: exit status 0, or 1 if some tokens could not be decrypted."""
    settings.require_production_secrets("TOKEN_ENCRYPTION_KEY")
    cipher = TokenCipher(settings.token_encryption_key)

    async def run() -> RekeyReport:
        pool = await db.create_pool(settings.database_url, max_size=2)
        try:
            return await rekey(pool, cipher)
        finally:
            await pool.close()

    report = asyncio.run(run())
    done = ", ".join(f"{table} {count}" for table, count in report.rekeyed.items())
    print(f"re-encrypted under the first key: {done}; already under it: {report.current}")
    if report.unreadable:
        print(
            f"error: {report.unreadable} token(s) could not be decrypted by any configured key and were left"
            " as they are; add the key they were stored under to TOKEN_ENCRYPTION_KEY and run again",
            file=sys.stderr,
        )
        return 1
    return 0
