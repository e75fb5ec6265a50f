"""Outside development, no service starts without TOKEN_ENCRYPTION_KEY and API_KEYS; it says which is
missing in one line and exits non-zero."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from gateway.app import create_app
from shared.settings import DEVELOPMENT_TOKEN_KEY, Settings

HINT = (
    " must be set outside development (METRIKA_SCORE_ENV=development runs a development stack without them)"
)


def production(**values: str) -> Settings:
    return Settings(metrika_score_env="production", **values)


def test_production_names_what_is_missing():
    with pytest.raises(SystemExit) as both:
        production().require_production_secrets()
    assert str(both.value) == f"error: TOKEN_ENCRYPTION_KEY and API_KEYS{HINT}"
    with pytest.raises(SystemExit) as key:
        production(api_keys="k1", token_encryption_key=" , ").require_production_secrets()
    assert str(key.value) == f"error: TOKEN_ENCRYPTION_KEY{HINT}"
    with pytest.raises(SystemExit) as keys:
        production(token_encryption_key="secret", api_keys=" ,").require_production_secrets()
    assert str(keys.value) == f"error: API_KEYS{HINT}"
    production(token_encryption_key="secret", api_keys="k1").require_production_secrets()
    # the gateway's composition root asks before anything else
    with pytest.raises(SystemExit):
        create_app(production(api_keys="k1"))


def test_development_runs_without_them():
    settings = Settings(metrika_score_env="development")
    settings.require_production_secrets()
    assert settings.token_encryption_key.get_secret_value() == DEVELOPMENT_TOKEN_KEY
    assert (
        Settings(
            metrika_score_env="development", token_encryption_key="mine"
        ).token_encryption_key.get_secret_value()
        == "mine"
    )


async def test_each_service_refuses_to_start():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("METRIKA_SCORE_ENV", "API_KEYS", "TOKEN_ENCRYPTION_KEY", "NOTIFY_SIGNING_KEY")
    }
    # were the check not first, these would fail some other way (nothing listens on port 9)
    env |= {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none", "AMQP_URL": "amqp://127.0.0.1:9/"}

    async def run(module: str) -> tuple[int | None, list[str]]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        return proc.returncode, err.decode().strip().splitlines()

    gateway, *consumers = await asyncio.gather(*(run(m) for m in ("gateway", "scorer", "uploader")))
    assert gateway == (1, [f"error: TOKEN_ENCRYPTION_KEY and API_KEYS{HINT}"]), gateway
    # the consumers send the notifications, signed with NOTIFY_SIGNING_KEY
    for returncode, lines in consumers:
        assert returncode == 1, lines
        assert lines == [f"error: TOKEN_ENCRYPTION_KEY, API_KEYS and NOTIFY_SIGNING_KEY{HINT}"], lines
