"""Encryption at rest for the Metrika OAuth tokens users hand us."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from shared import errors


class TokenCipher:
    """Fernet (AES-128-CBC + HMAC) keyed by SHA-256 of the configured secret."""

    def __init__(self, secret: SecretStr) -> None:
        digest = hashlib.sha256(secret.get_secret_value().encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(blob)).decode()
        except InvalidToken as exc:
            raise errors.Permanent(
                "stored Metrika token cannot be decrypted: TOKEN_ENCRYPTION_KEY changed since it was stored"
            ) from exc
