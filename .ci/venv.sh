# Sourced by .ci/serve, .ci/test, bench/run.sh and examples/run.sh: create a virtual
# environment and install rtlink into it from a committed lock (requirements/*.lock,
# exact versions and hashes; `bash .ci/lock` refreshes them), so that the same commit
# installs the same packages on any day.
#
#   source .ci/venv.sh KIND
#     "" or redis   .venv      requirements/serve.lock   (the library, redis-py)
#     dev or bench  .venv      requirements/dev.lock     (+ tests, checks, benchmark peers)
#     minimum       .venv-min  requirements/minimum.lock (dependencies at their declared
#                                                         minimums, and the test tools)
#
# Re-installs only when pyproject.toml or the lock changed (a hash stamp), so repeated
# runs are fast. Afterwards $root is the repository and the venv's bin/ leads PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kind="${1:-}"  # callers always pass it: a bare `source` would hand over their own $1
venv="$root/.venv"
case "$kind" in
    "" | redis) lock=serve ;;
    dev | bench) lock=dev ;;
    minimum) lock=minimum; venv="$root/.venv-min" ;;
    *) echo "venv.sh: unknown kind '$kind'" >&2; return 2 ;;
esac
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp_of() {  # the stamp a venv carries once LOCK is installed, and what it must say
    echo "$venv/.rtlink-installed-$1"
}
want_of() {
    cat "$root/pyproject.toml" "$root/requirements/$1.lock" | sha256sum | cut -d' ' -f1
}
current() { [ "$(cat "$(stamp_of "$1")" 2>/dev/null || true)" = "$(want_of "$1")" ]; }
# dev.lock holds serve.lock's versions and more: a dev install also satisfies serve.
if ! current "$lock" && ! { [ "$lock" = serve ] && current dev; }; then
    echo "installing rtlink and requirements/$lock.lock into $venv ..." >&2
    log="$venv/install.log"
    # Wheels only, hashes checked; rtlink itself is built with the locked setuptools
    # (no build isolation: that would fetch today's setuptools).
    if ! { "$venv/bin/python" -m pip install --disable-pip-version-check \
               --only-binary=:all: --require-hashes -r "$root/requirements/$lock.lock" &&
           "$venv/bin/python" -m pip install --disable-pip-version-check \
               --no-deps --no-build-isolation -e "$root"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "pip install failed (log above, also in $log)" >&2
        exit 1
    fi
    rm -f "$venv"/.rtlink-installed*  # a different lock may have changed versions
    want_of "$lock" > "$(stamp_of "$lock")"
fi
export PATH="$venv/bin:$PATH"
