#!/usr/bin/env bash
# The one command of the benchmarks, from the repository root:
#   bash bench/run.sh [--quick] [--only fanout,idle,...] [--json PATH]
# Creates or reuses .venv with rtlink and the `bench` extra (python-socketio, redis),
# then runs every scenario (bench/__main__.py): tables on stdout, rows in JSON.
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
exec python -m bench "$@"
