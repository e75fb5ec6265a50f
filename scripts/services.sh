#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on loopback: start them if installed and stopped,
# install them with apt-get if absent. Idempotent; safe to run before every demo and test run.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  for _ in $(seq 1 "$2"); do port_open "$1" && return 0; sleep 1; done
  echo "services: $3 did not come up on 127.0.0.1:$1" >&2
  return 1
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then echo "services: PostgreSQL is up"; return; fi
  local fresh=""
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL"
    apt_install postgresql
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ -n "$fresh" ]; then
    # a cluster we just installed: let the local `postgres` user in over loopback without a password
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  echo "services: starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || $SUDO pg_ctlcluster "$version" main start
  wait_port 5432 60 PostgreSQL
}

ensure_rabbitmq() {
  if port_open 5672; then echo "services: RabbitMQ is up"; return; fi
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "services: installing RabbitMQ"
    apt_install rabbitmq-server
  fi
  if ! port_open 5672; then
    echo "services: starting RabbitMQ"
    $SUDO env PATH="$PATH:/usr/sbin" rabbitmq-server -detached || true
  fi
  wait_port 5672 120 RabbitMQ
}

ensure_postgres
ensure_rabbitmq
