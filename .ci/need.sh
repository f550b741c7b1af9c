# Sourced by .ci/test and bench/run.sh: `need BINARY PACKAGE` installs a Debian package
# that tests or benchmarks run themselves (nginx, redis-server, ...) when it is missing.
need() {  # need BINARY DEBIAN-PACKAGE: under CI=true (or INSTALL_MISSING=true), install it
    if [ "${INSTALL_MISSING:-${CI:-}}" = "true" ] && ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
        echo "installing $2 ..." >&2
        local sudo="" policy=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        # Keep the package's own service (a system nginx on port 80) from starting;
        # the tests run their own. Only if no policy is in place already.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            policy=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
            $sudo chmod +x "$policy"
        fi
        local status=0
        { $sudo apt-get update -qq >/dev/null &&
          $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; } ||
            status=$?
        [ -z "$policy" ] || $sudo rm -f "$policy"
        [ "$status" = 0 ] || { echo "could not install $2" >&2; exit "$status"; }
    fi
}
