#!/usr/bin/env bash
# CI's check of docker-compose.yml with Docker Compose v2's own `docker compose config` (no daemon needed):
#  1. without the secrets it must refuse (production-safe: no development keys);
#  2. with placeholder secrets it must resolve, and the resolved stack must be the one README
#     "Deployment" describes (scripts/compose_expect.py: services, replicas, healthchecks, restarts...);
#  3. the sandbox runs only under `--profile sandbox`.
# Compose v2: `docker compose` if it works; else Debian's build of it (package docker-compose 2.x, in
# trixie; bookworm has only the Python 1.x), fetched once with apt-get from deb.debian.org (signed by
# Debian's archive keys, nothing installed system-wide) into .run/compose/. Idempotent; ~1 s once cached.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CACHE=.run/compose
PLUGIN="$CACHE/cli-plugins/docker-compose"

fetch_compose() {
  local apt="$CACHE/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$CACHE/cli-plugins"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$PWD/$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$PWD/$apt/lists" -o "Dir::Cache=$PWD/$apt/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root -q)
  echo "compose_check: fetching Debian's docker-compose (Compose v2) into $CACHE"
  apt-get "${opts[@]}" update >/dev/null
  (cd "$apt" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  local deb
  deb=$(ls "$apt"/docker-compose_*.deb)
  case "$(basename "$deb")" in docker-compose_1.*) echo "compose_check: got Compose 1.x ($deb)" >&2; exit 1;; esac
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/libexec/docker/cli-plugins/docker-compose > "$PLUGIN.tmp"
  chmod +x "$PLUGIN.tmp" && mv "$PLUGIN.tmp" "$PLUGIN"
  rm -rf "$apt"
}

# how compose runs: its environment is cleaned (a developer's .env or exported secrets do not count)
base=(env -i PATH="$PATH" HOME="${HOME:-/tmp}")
if docker compose version >/dev/null 2>&1; then
  [ -n "${DOCKER_CONFIG:-}" ] && base+=(DOCKER_CONFIG="$DOCKER_CONFIG")
  cmd=(docker compose)
else
  [ -x "$PLUGIN" ] || fetch_compose
  if command -v docker >/dev/null; then
    base+=(DOCKER_CONFIG="$PWD/$CACHE") cmd=(docker compose)  # the plugin, as `docker compose`
  else
    cmd=("$PWD/$PLUGIN")  # no docker CLI: the same binary runs standalone
  fi
fi
compose() { "${base[@]}" "$@"; }  # compose VAR=value... -- args
echo "compose_check: $("${base[@]}" "${cmd[@]}" version)"
secrets=(API_KEYS=ci-key TOKEN_ENCRYPTION_KEY=ci-token-key NOTIFY_SIGNING_KEY=ci-notify-key
  POSTGRES_PASSWORD=ci-pg RABBITMQ_PASSWORD=ci-mq)

# 1. every secret is required
for i in "${!secrets[@]}"; do
  name=${secrets[$i]%%=*}
  others=("${secrets[@]:0:$i}" "${secrets[@]:$((i + 1))}")
  if out=$(compose "${others[@]}" "${cmd[@]}" --env-file /dev/null config -q 2>&1); then
    echo "compose_check: FAILED: the stack resolves without $name" >&2; exit 1
  fi
  grep -q "$name" <<<"$out" || { echo "compose_check: FAILED: no word of $name in: $out" >&2; exit 1; }
done

# 2. resolved with the secrets, the stack is the documented one; 3. the sandbox only in its profile
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
compose "${secrets[@]}" "${cmd[@]}" --env-file /dev/null config --format json > "$tmp/default.json"
compose "${secrets[@]}" "${cmd[@]}" --env-file /dev/null --profile sandbox config --format json > "$tmp/sandbox.json"
"$PY" -m scripts.compose_expect "$tmp/default.json" "$tmp/sandbox.json"
echo "compose_check: docker-compose.yml OK"
