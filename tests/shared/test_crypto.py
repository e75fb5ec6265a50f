"""Token encryption: the key derivation, rotation through several keys, the old SHA-256 derivation still
read, and `metrika-score rekey` on a real database."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import sys
import uuid

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from shared import errors
from shared.crypto import TokenCipher, rekey
from shared.db import tasks, webhooks


def cipher(keys: str) -> TokenCipher:
    return TokenCipher(SecretStr(keys))


def legacy_blob(key: str, token: str) -> bytes:
    """A token as stored before scrypt: Fernet keyed by SHA-256 of the configured string."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())).encrypt(token.encode())


def test_round_trip_and_the_derivations():
    blob = cipher("a passphrase").encrypt("y0_token")
    assert b"y0_token" not in blob and cipher("a passphrase").decrypt(blob) == "y0_token"
    # any other string: scrypt with the documented parameters
    derived = hashlib.scrypt(
        b"a passphrase",
        salt=b"metrika-score TOKEN_ENCRYPTION_KEY v2",
        n=2**15,
        r=8,
        p=1,
        dklen=32,
        maxmem=64 * 1024 * 1024,
    )
    assert Fernet(base64.urlsafe_b64encode(derived)).decrypt(blob) == b"y0_token"
    # a Fernet key: as it is
    key = Fernet.generate_key()
    assert Fernet(key).decrypt(cipher(key.decode()).encrypt("y0_token")) == b"y0_token"
    with pytest.raises(ValueError, match="empty"):
        cipher(" , ")


def test_rotation_first_key_encrypts_every_key_decrypts():
    old_blob = cipher("old-key").encrypt("y0_old")
    both = cipher("new-key, old-key")
    assert both.decrypt(old_blob) == "y0_old" and not both.is_current(old_blob)
    new_blob = both.encrypt("y0_new")
    assert both.is_current(new_blob) and cipher("new-key").decrypt(new_blob) == "y0_new"
    with pytest.raises(errors.Permanent, match="no longer lists"):
        cipher("old-key").decrypt(new_blob)
    rotated = both.rotate(old_blob)
    assert cipher("new-key").decrypt(rotated) == "y0_old"
    with pytest.raises(errors.Permanent):
        cipher("new-key").decrypt(old_blob)  # once the old key is dropped, only rekeyed tokens remain


def test_tokens_stored_under_the_old_derivation_are_still_read():
    blob = legacy_blob("dev-only-change-me", "y0_kept")
    assert cipher("dev-only-change-me").decrypt(blob) == "y0_kept"
    assert cipher("new-key,dev-only-change-me").decrypt(blob) == "y0_kept"
    assert not cipher("dev-only-change-me").is_current(blob)
    # the old derivation only decrypts: what is encrypted now it cannot read
    fresh = cipher("dev-only-change-me").encrypt("y0_new")
    with pytest.raises(InvalidToken):
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"dev-only-change-me").digest())).decrypt(fresh)


async def _store(pool, blobs: list[bytes]) -> None:
    """One row per blob in each of tasks, webhooks and batches."""
    for blob in blobs:
        await tasks.insert(pool, uuid.uuid4(), dt.date(2026, 1, 1), 1, blob)
        await webhooks.insert(
            pool, webhooks.NewWebhook(uuid.uuid4(), "crm", None, 1, blob, b"h" * 32, "json", None, None, None)
        )
        await pool.execute(
            "INSERT INTO batches (id, source, counter_id, token_enc, status)"
            " VALUES ($1, 'single', 1, $2, 'accepted')",
            uuid.uuid4(),
            blob,
        )


async def _tokens(pool) -> list[bytes]:
    rows = await pool.fetch(
        "SELECT token_enc FROM tasks UNION ALL SELECT token_enc FROM webhooks"
        " UNION ALL SELECT token_enc FROM batches"
    )
    return [bytes(row["token_enc"]) for row in rows]


async def test_rekey_moves_every_token_to_the_first_key(pool):
    blobs = [
        legacy_blob("old-key", "y0_legacy"),
        cipher("old-key").encrypt("y0_old"),
        cipher("new-key").encrypt("y0_current"),
        cipher("lost-key").encrypt("y0_lost"),
    ]
    await _store(pool, blobs)
    report = await rekey(pool, cipher("new-key,old-key"), page=2)
    assert report.rekeyed == {"tasks": 2, "batches": 2, "webhooks": 2}
    assert (report.current, report.unreadable) == (3, 3)

    new_only = cipher("new-key")
    readable = []
    for blob in await _tokens(pool):
        if cipher("lost-key").is_current(blob):
            continue  # left as it was: no configured key opens it
        assert new_only.is_current(blob)
        readable.append(new_only.decrypt(blob))
    assert sorted(readable) == sorted(["y0_legacy", "y0_old", "y0_current"] * 3)

    again = await rekey(pool, cipher("new-key,old-key"))
    assert again.rekeyed == {"tasks": 0, "batches": 0, "webhooks": 0} and again.current == 9


async def test_the_rekey_command(settings, pool):
    await _store(pool, [legacy_blob("old-key", "y0_legacy"), cipher("new-key").encrypt("y0_current")])
    env = {k: v for k, v in os.environ.items() if k not in ("METRIKA_SCORE_ENV", "API_KEYS")}
    env |= {"DATABASE_URL": settings.database_url, "TOKEN_ENCRYPTION_KEY": "new-key,old-key"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scorer.cli", "rekey", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "tasks 1, batches 1, webhooks 1; already under it: 3" in out.decode()
    assert sorted(cipher("new-key").decrypt(blob) for blob in await _tokens(pool)) == sorted(
        ["y0_legacy", "y0_current"] * 3
    )

    # production needs the key, and says so in one line
    del env["TOKEN_ENCRYPTION_KEY"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scorer.cli", "rekey", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().strip().splitlines() == [
        "error: TOKEN_ENCRYPTION_KEY must be set outside development"
        " (METRIKA_SCORE_ENV=development runs a development stack without them)"
    ]
