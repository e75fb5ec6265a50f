"""What docker-compose.yml must run (README "Deployment"), checked on the stack `docker compose config
--format json` resolved (scripts/compose_check.sh) or on the file itself (tests/deploy/test_compose.py);
a resolved stack's environments must also make valid production Settings.

    python -m scripts.compose_expect default.json [with-sandbox-profile.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# service -> (command, replicas)
APP_SERVICES: dict[str, tuple[list[str], int]] = {
    "gateway": (["python", "-m", "gateway"], 1),
    "scorer": (["python", "-m", "scorer"], 2),
    "uploader": (["python", "-m", "uploader"], 2),
    "scheduler": (["python", "-m", "scheduler"], 1),
}
INFRASTRUCTURE = ("postgres", "rabbitmq")
SECRETS = ("API_KEYS", "TOKEN_ENCRYPTION_KEY", "NOTIFY_SIGNING_KEY")
# the services that serve HTTP (gateway: /health; scorer, uploader, scheduler: /metrics)
HEALTHCHECKED = ("postgres", "rabbitmq", "gateway", "scorer", "uploader", "scheduler")


def _replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def problems(stack: dict[str, Any], *, sandbox_profile: bool = False) -> list[str]:
    """Every way `stack` (compose's model: {"services": {...}}) differs from the documented stack."""
    found: list[str] = []
    services: dict[str, Any] = stack.get("services") or {}
    # a resolved stack lists only the services of its active profiles; the file lists them all
    active = {name for name, s in services.items() if not s.get("profiles")}
    wanted = set(APP_SERVICES) | set(INFRASTRUCTURE)
    if active != wanted:
        found.append(f"services started by default: {sorted(active)}, wanted {sorted(wanted)}")
    sandbox = services.get("sandbox")
    if sandbox is None:
        if sandbox_profile:
            found.append("the sandbox profile does not start the sandbox")
    elif "sandbox" not in (sandbox.get("profiles") or []):
        found.append("the sandbox must run only under `--profile sandbox`")
    for name, (command, replicas) in APP_SERVICES.items():
        service = services.get(name)
        if service is None:
            continue
        if service.get("command") != command:
            found.append(f"{name}: command {service.get('command')}, wanted {command}")
        if _replicas(service) != replicas:
            found.append(f"{name}: {_replicas(service)} replicas, wanted {replicas}")
        env = service.get("environment") or {}
        if env.get("METRIKA_SCORE_ENV") != "production":
            found.append(f"{name}: METRIKA_SCORE_ENV is {env.get('METRIKA_SCORE_ENV')!r}, not production")
        for secret in SECRETS:
            if not env.get(secret):
                found.append(f"{name}: no {secret}")
        if not service.get("stop_grace_period"):
            found.append(f"{name}: no stop_grace_period (work in flight is cut off)")
        if service.get("build") is None:
            found.append(f"{name}: not built from the Dockerfile")
    for name in (*APP_SERVICES, *INFRASTRUCTURE):
        service = services.get(name)
        if service is not None and service.get("restart") not in ("always", "unless-stopped", "on-failure"):
            found.append(f"{name}: restart policy {service.get('restart')!r}")
    for name in HEALTHCHECKED:
        service = services.get(name)
        if service is None:
            continue
        test = (service.get("healthcheck") or {}).get("test")
        if not test:
            found.append(f"{name}: no healthcheck")
            continue
        # a service serving /metrics on METRICS_PORT is checked on that port
        port = (service.get("environment") or {}).get("METRICS_PORT")
        if port and f":{port}/metrics" not in " ".join(map(str, test)):
            found.append(f"{name}: its healthcheck does not GET /metrics on its METRICS_PORT {port}")
    return found


def settings_problems(stack: dict[str, Any]) -> list[str]:
    """Every app service's resolved environment must make valid Settings that pass the production check
    (an empty METRIKA_COUNTER, say, would stop every service at start)."""
    from pydantic import ValidationError

    from shared.settings import Settings

    found: list[str] = []
    for name in APP_SERVICES:
        service = (stack.get("services") or {}).get(name)
        if service is None:
            continue
        env = {k.lower(): v for k, v in (service.get("environment") or {}).items() if v is not None}
        try:
            settings = Settings(**env)
            settings.require_production_secrets("TOKEN_ENCRYPTION_KEY", "API_KEYS", "NOTIFY_SIGNING_KEY")
        except ValidationError as exc:
            first = exc.errors()[0]
            found.append(f"{name}: its environment is not valid settings: {first['loc']}: {first['msg']}")
        except SystemExit as exc:
            found.append(f"{name}: {exc}")
    return found


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    resolved = json.loads(Path(argv[0]).read_text())
    found = problems(resolved) + settings_problems(resolved)
    if len(argv) == 2:
        found += [
            f"--profile sandbox: {p}"
            for p in problems(json.loads(Path(argv[1]).read_text()), sandbox_profile=True)
        ]
    for problem in found:
        print(f"compose_expect: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
