#!/usr/bin/env bash
# Makes sure RabbitMQ and a MongoDB-wire server answer at RABBITMQ_URL / MONGODB_URL.
# Starts local ones only when the URL points at this machine and nothing answers there.
# Prints the PIDs it started to .run/started.pids (so `make run` can stop only what it started).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}
MONGODB_URL=${MONGODB_URL:-mongodb://127.0.0.1:27017/}
hostport() { .venv/bin/python - "$1" "$2" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or int(sys.argv[2]))
PY
}
reachable() { .venv/bin/python -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()' "$1" "$2" 2>/dev/null; }
is_local() { case "$1" in 127.*|localhost|::1) return 0;; *) return 1;; esac; }
wait_for() { for _ in $(seq 1 "${3:-120}"); do reachable "$1" "$2" && return 0; sleep 0.5; done; return 1; }

read -r RH RP < <(hostport "$RABBITMQ_URL" 5672)
if ! reachable "$RH" "$RP"; then
  is_local "$RH" || { echo "RabbitMQ at $RH:$RP is not reachable" >&2; exit 1; }
  if ! command -v rabbitmq-server >/dev/null; then
    echo "installing rabbitmq-server (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  echo "starting RabbitMQ on $RH:$RP" >&2
  rabbitmq-server -detached || true
  wait_for "$RH" "$RP" 240 || { echo "RabbitMQ did not start" >&2; exit 1; }
  echo "rabbitmq" >> .run/started.services
fi
read -r MH MP < <(hostport "$MONGODB_URL" 27017)
if ! reachable "$MH" "$MP"; then
  is_local "$MH" || { echo "MongoDB at $MH:$MP is not reachable" >&2; exit 1; }
  echo "starting SecantusDB (MongoDB-wire, tests/demo only) on $MH:$MP" >&2
  mkdir -p .run/mongo-data
  nohup .venv-secantus/bin/secantusd-py --host "$MH" --port "$MP" --storage-path .run/mongo-data \
    > .run/secantus.log 2>&1 &
  echo $! >> .run/started.pids
  wait_for "$MH" "$MP" 120 || { echo "SecantusDB did not start; see .run/secantus.log" >&2; exit 1; }
fi
# helm for the chart's offline tests (tests/deploy/test_helm_chart.py): pinned, cached in .run/tools. Not fatal here
# (`make run` needs no helm); the chart tests fetch it again and fail with the reason.
bash scripts/helm.sh >/dev/null || echo "helm could not be fetched: the chart tests (tests/deploy) will fail" >&2

# Observability checks (tests/e2e/test_user_lifecycle.py evaluates the Grafana dashboard's queries): Debian's
# prometheus package, and RabbitMQ's own metrics endpoint (rabbitmq_prometheus plugin, :15692) on a local broker.
if ! command -v prometheus >/dev/null; then
  echo "installing prometheus (Debian package)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if is_local "$RH" && ! reachable "$RH" 15692 && command -v rabbitmq-plugins >/dev/null; then
  echo "enabling RabbitMQ's rabbitmq_prometheus plugin (queue backlogs on :15692)" >&2
  rabbitmq-plugins enable rabbitmq_prometheus >/dev/null
  wait_for "$RH" 15692 60 || { echo "rabbitmq_prometheus did not start listening on :15692" >&2; exit 1; }
fi

# Browser tests (tests/harness/browser.py): Debian's chromium and its matching chromedriver, which Selenium drives with
# Selenium Manager off (the harness names both binaries, so no browser or driver is ever downloaded).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (Debian packages)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
