#!/usr/bin/env bash
# Run one example:  bash examples/run.sh NAME [--port N]   (--help lists each one's options)
#   chat           a browser chat room                            http://127.0.0.1:8081/
#   notifications  per-user notification feeds behind nginx      http://127.0.0.1:8082/
#   publisher      a Python service publishing through Redis, and publishing over HTTP
#   dashboard      live server metrics, a plot moving every 100 ms http://127.0.0.1:8083/
# Like .ci/serve, it creates .venv and installs rtlink into it the first time. The
# notifications example runs its own nginx and the publisher its own redis-server
# (private instances on loopback ports, gone when the example stops): with
# INSTALL_MISSING=true they are installed with apt-get when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage="usage: bash examples/run.sh chat|notifications|publisher|dashboard [options]"
name="${1:-}"
case "$name" in
    chat | dashboard) ;;
    notifications) source "$here/../.ci/need.sh"; need nginx nginx-light ;;
    publisher) source "$here/../.ci/need.sh"; need redis-server redis-server ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
shift
source "$here/../.ci/venv.sh" ""  # "" keeps our own arguments out of its $1
if [ "$name" = publisher ] && ! python -c "import redis" 2>/dev/null; then
    source "$here/../.ci/venv.sh" redis  # the Redis client (a dev install has it already)
fi
cd "$root"
exec python -m "examples.$name" "$@"
