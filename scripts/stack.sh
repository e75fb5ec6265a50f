#!/usr/bin/env bash
# `make up` / `make down`: the whole stack in the background on loopback, logs and PIDs under .run/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
PY=${PY:-.venv/bin/python}

# a development stack: the services start without TOKEN_ENCRYPTION_KEY (a published development key)
export METRIKA_SCORE_ENV=${METRIKA_SCORE_ENV:-development}
export API_KEYS=${API_KEYS:-dev-key}
export METRIKA_API_URL=${METRIKA_API_URL:-http://127.0.0.1:8081}
export METRIKA_TOKEN=${METRIKA_TOKEN:-sandbox-token}
export PORT=${PORT:-8000}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/metrika_score}
export WORK_DIR=${WORK_DIR:-$PWD/$RUN/work}

start() { # name module...
  local name=$1; shift
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$RUN/$name.pid"))"; return
  fi
  nohup "$PY" -m "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_http() { # url name
  for _ in $(seq 1 60); do
    if "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "$2 did not answer at $1; see $RUN/$2.log" >&2
  return 1
}

up() {
  mkdir -p "$RUN/work"
  start sandbox sandbox --port 8081
  wait_http http://127.0.0.1:8081/sandbox/requests sandbox
  start gateway gateway
  wait_http "http://127.0.0.1:$PORT/health" gateway
  start scorer scorer
  if [ -d uploader ] && [ -f uploader/__main__.py ]; then start uploader uploader; fi
  start scheduler scheduler
  cat <<MSG
stack is up (logs and PIDs in $RUN/):
  gateway   http://127.0.0.1:$PORT     API key: $API_KEYS   (Authorization: Bearer $API_KEYS)
  sandbox   $METRIKA_API_URL   (METRIKA_API_URL; accepts the token sandbox-token)
  metrics   http://127.0.0.1:$PORT/metrics, scorer :9101/metrics, uploader :9102/metrics, scheduler :9103/metrics
try:
  curl -s -X POST http://127.0.0.1:$PORT/tasks -H 'Authorization: Bearer $API_KEYS' \\
       -H 'Content-Type: application/json' -d '{"date": "$(date -d yesterday +%F)", "counter": 123456}'
stop with: make down
MSG
}

down() {
  for name in scheduler uploader scorer gateway sandbox; do
    if [ -f "$RUN/$name.pid" ]; then
      pid=$(cat "$RUN/$name.pid")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        echo "stopped $name"
      fi
      rm -f "$RUN/$name.pid"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
