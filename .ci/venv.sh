# Sourced by .ci/serve and .ci/test: create .venv and install rtlink into it.
# Re-installs only when pyproject.toml changed (a hash stamp), so repeated runs are fast.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"  # callers always pass it: a bare `source` would hand over their own $1
venv="$root/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.rtlink-installed${extras:+-$extras}"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
current() { [ "$(cat "$1" 2>/dev/null || true)" = "$want" ]; }
# An install with the dev extras also satisfies a plain one.
if ! current "$stamp" && ! { [ -z "$extras" ] && current "$venv/.rtlink-installed-dev"; }; then
    echo "installing rtlink${extras:+[$extras]} into $venv ..." >&2
    log="$venv/install.log"
    if ! { "$venv/bin/python" -m pip install --upgrade pip &&
           "$venv/bin/python" -m pip install -e "$root${extras:+[$extras]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "pip install failed (log above, also in $log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
