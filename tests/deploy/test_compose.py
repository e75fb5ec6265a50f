"""docker-compose.yml runs the documented stack (scripts/compose_expect.py); CI also checks it resolved by
Compose v2 itself (scripts/compose_check.sh)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from scripts.compose_expect import problems, settings_problems

ROOT = Path(__file__).resolve().parents[2]


def _stack() -> dict[str, Any]:
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # YAML merge keys resolved
    assert isinstance(stack, dict)
    return stack


def test_compose_runs_gateway_two_scorers_two_uploaders_and_the_scheduler() -> None:
    stack = _stack()
    assert problems(stack) == []
    replicas = {name: (s.get("deploy") or {}).get("replicas", 1) for name, s in stack["services"].items()}
    assert {k: replicas[k] for k in ("gateway", "scorer", "uploader", "scheduler")} == {
        "gateway": 1,
        "scorer": 2,
        "uploader": 2,
        "scheduler": 1,
    }


def test_secrets_have_no_defaults_and_the_sandbox_is_opt_in() -> None:
    services = _stack()["services"]
    env = services["gateway"]["environment"]
    for name in ("API_KEYS", "TOKEN_ENCRYPTION_KEY", "NOTIFY_SIGNING_KEY"):
        assert env[name].startswith("${" + name + ":?"), env[name]
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert "${RABBITMQ_PASSWORD:?" in env["AMQP_URL"]
    assert env["METRIKA_API_URL"] == "${METRIKA_API_URL:-https://api-metrika.yandex.net}"
    assert services["sandbox"]["profiles"] == ["sandbox"]


def test_the_check_finds_a_stack_that_differs() -> None:
    stack = copy.deepcopy(_stack())
    stack["services"]["uploader"]["deploy"] = {"replicas": 1}
    del stack["services"]["scheduler"]
    stack["services"]["scorer"]["environment"]["METRIKA_SCORE_ENV"] = "development"
    stack["services"]["sandbox"]["profiles"] = []
    found = problems(stack)
    assert "uploader: 1 replicas, wanted 2" in found
    assert "scorer: METRIKA_SCORE_ENV is 'development', not production" in found
    assert "the sandbox must run only under `--profile sandbox`" in found
    assert any("services started by default" in p for p in found)


def test_every_metrics_port_is_healthchecked() -> None:
    stack = copy.deepcopy(_stack())
    assert stack["services"]["scheduler"]["environment"]["METRICS_PORT"] == "9103"
    del stack["services"]["scheduler"]["healthcheck"]
    stack["services"]["uploader"]["environment"]["METRICS_PORT"] = "9202"
    found = problems(stack)
    assert "scheduler: no healthcheck" in found
    assert "uploader: its healthcheck does not GET /metrics on its METRICS_PORT 9202" in found


def test_the_image_carries_every_package_compose_runs() -> None:
    allowed = (ROOT / ".dockerignore").read_text().split()
    for package in ("shared", "gateway", "scorer", "uploader", "scheduler", "sandbox", "models"):
        assert f"!{package}" in allowed
    include = (ROOT / "pyproject.toml").read_text()
    assert '"scheduler*"' in include


def test_an_environment_the_services_would_refuse_is_found() -> None:
    env = {
        "API_KEYS": "k",
        "TOKEN_ENCRYPTION_KEY": "t",
        "NOTIFY_SIGNING_KEY": "n",
        "METRIKA_SCORE_ENV": "production",
        "METRIKA_COUNTER": None,  # unset: passed through only when set
    }
    stack = {"services": {name: {"environment": dict(env)} for name in ("gateway", "scorer")}}
    assert settings_problems(stack) == []
    stack["services"]["scorer"]["environment"]["METRIKA_COUNTER"] = ""  # what `${METRIKA_COUNTER:-}` gave
    stack["services"]["gateway"]["environment"]["NOTIFY_SIGNING_KEY"] = ""
    found = settings_problems(stack)
    assert len(found) == 2
    assert found[0].startswith("gateway: error: NOTIFY_SIGNING_KEY must be set")
    assert found[1].startswith("scorer: its environment is not valid settings: ('metrika_counter',)")
