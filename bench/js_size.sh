#!/usr/bin/env bash
# Size of the browser client next to its peers, measured the same way for all:
# bundled for the browser with esbuild --minify (ESM), then gzip -9.
# Installs the peers' latest releases from npm into a temporary directory.
#   bash bench/js_size.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
# rtlink's package is measured like the others: through its package entry (the
# built dist/rtlink.mjs, as published), not its sources.
npm install --no-audit --no-fund --loglevel=error --install-links \
    esbuild "$root/js-client" socket.io-client @microsoft/signalr centrifuge phoenix 2>/dev/null >/dev/null
measure() {  # measure NAME VERSION ENTRY-CODE
    echo "$3" > entry.mjs
    local bytes
    bytes=$(node_modules/.bin/esbuild entry.mjs --bundle --minify --format=esm --platform=browser \
        --log-level=error | gzip -9 | wc -c)
    printf '| %-18s | %-8s | %6d B | %5.1f KiB |\n' "$1" "$2" "$bytes" \
        "$(echo "$bytes / 1024" | bc -l)"
}
version() { node -p "JSON.parse(require('fs').readFileSync('node_modules/$1/package.json')).version"; }
echo '| client             | version  | min+gzip | KiB |'
echo '|--------------------|----------|----------|-----|'
measure rtlink "$(version rtlink-client)" "export * from 'rtlink-client'"
measure socket.io-client "$(version socket.io-client)" "export {io} from 'socket.io-client'"
measure @microsoft/signalr "$(version @microsoft/signalr)" "export * from '@microsoft/signalr'"
measure centrifuge "$(version centrifuge)" "export * from 'centrifuge'"
measure phoenix "$(version phoenix)" "export * from 'phoenix'"
