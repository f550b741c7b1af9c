#!/usr/bin/env bash
# The one command of the benchmarks, from the repository root:
#   bash bench/run.sh [--quick] [--only fanout,idle,...] [--json PATH]
# Creates or reuses .venv with rtlink and the `bench` extra (python-socketio, redis),
# and bench/servers/node/node_modules (ws, socket.io) with npm ci, then runs every
# scenario (bench/__main__.py): tables on stdout, rows in JSON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The components the scenarios start themselves; installed when missing if we are root
# (otherwise the rows that need them say "not measured").
source .ci/need.sh
if [ "$(id -u)" = 0 ]; then export INSTALL_MISSING=true; fi
need nginx nginx-light  # connect: fallback behind a buffering proxy (tests/support/proxy.py)
need redis-server redis-server  # redis: publish throughput
# shellcheck source=../.ci/venv.sh
source .ci/venv.sh bench
# The Node peers (ws, socket.io) from their committed lock, like the Python peers: the
# same commit installs the same versions on any day. Without node and npm their rows
# say "not measured".
if command -v node >/dev/null && command -v npm >/dev/null; then
    (
        cd bench/servers/node
        if [ ! -f node_modules/.package-lock.json ] ||
           [ package-lock.json -nt node_modules/.package-lock.json ]; then
            echo "installing the Node peers (npm ci in bench/servers/node) ..." >&2
            npm ci --no-audit --no-fund --loglevel=error >&2
        fi
    )
fi
exec python -m bench "$@"
