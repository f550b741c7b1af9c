#!/usr/bin/env bash
# Publish one message over HTTP: how a service in any language publishes through an
# rtlink server (POST {path}/publish, mounted by attach(..., api_keys=[...])).
#
#   RTLINK_API_KEY=KEY bash examples/publish.sh URL CHANNEL JSON [IDEMPOTENCY-KEY]
#   RTLINK_API_KEY=KEY bash examples/publish.sh http://127.0.0.1:8084/rt orders '{"status": "paid"}'
#
# Prints the server's answer, {"channel": ..., "position": {"epoch": ..., "offset": N}},
# or, refused, its error ({"error": {"code": ..., "message": ...}}: 401 wrong key, 422
# unknown channel, 413 too large, ...) and exits with status 1. Give an idempotency key
# when you may retry: a repeat within the channel's key_ttl publishes nothing and
# answers with the first position.
#
# The same request as one curl line (the key then shows in `ps`; here it does not):
#   curl -fsS -H "Authorization: Bearer $RTLINK_API_KEY" -H 'Content-Type: application/json' \
#        -d '{"channel": "orders", "data": {"status": "paid"}}' http://127.0.0.1:8084/rt/publish
set -euo pipefail
if [ $# -lt 3 ] || [ $# -gt 4 ] || [ -z "${RTLINK_API_KEY:-}" ]; then
    echo "usage: RTLINK_API_KEY=KEY bash $0 URL CHANNEL JSON [IDEMPOTENCY-KEY]" >&2
    exit 2
fi
url=$1 channel=$2 data=$3
headers=(--header "Content-Type: application/json")
[ $# -lt 4 ] || headers+=(--header "Idempotency-Key: $4")
# Channel names need no escaping in JSON: they are made of A-Z a-z 0-9 _ - . : @ / = + , #
status=0
curl --silent --show-error --fail-with-body "${headers[@]}" \
    --header @- <<<"Authorization: Bearer $RTLINK_API_KEY" \
    --data-binary "{\"channel\": \"$channel\", \"data\": $data}" "${url%/}/publish" || status=$?
echo
[ "$status" = 0 ] || exit 1
