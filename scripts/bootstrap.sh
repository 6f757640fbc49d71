#!/usr/bin/env bash
# Creates the project's virtualenvs (idempotent): .venv for the bridge and its tests,
# .venv-secantus for the local MongoDB-wire test server (GPL-2.0, beta: tests and demo only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
if [ ! -x .venv-secantus/bin/secantusd-py ]; then
  "$PY" -m venv .venv-secantus
  .venv-secantus/bin/pip install -q 'secantusdb==0.7.0b3'
fi
