#!/usr/bin/env bash
# The Complement image's entrypoint (complement/entrypoint.sh), run without Docker on the
# binary given: with a CA where Complement mounts one, the server comes up named hs1 and its
# federation listener presents a certificate for hs1 that the CA vouches for (checked by
# curl against that CA alone), and publishes its signing key as hs1.
# Usage: scripts/complement_check.sh path/to/sandcat
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$1"
WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$WORK/ca" "$WORK/data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=Complement CA" -keyout "$WORK/ca/ca.key" -out "$WORK/ca/ca.crt" 2>/dev/null
chmod a-w "$WORK/ca"
PORT=$(free_port)
FED_PORT=$(free_port)
SERVER_NAME=hs1 COMPLEMENT_CA_DIR="$WORK/ca" SANDCAT_BIN="$BIN" SANDCAT_DATA_DIR="$WORK/data" \
    SANDCAT_LISTEN="127.0.0.1:$PORT" SANDCAT_FEDERATION_LISTEN="127.0.0.1:$FED_PORT" SANDCAT_LOG=warn \
    sh complement/entrypoint.sh > "$WORK/sandcat.log" 2>&1 &
PID=$!
fed() { curl -fsS --cacert "$WORK/ca/ca.crt" --resolve "hs1:$FED_PORT:127.0.0.1" "https://hs1:$FED_PORT$1"; }
for _ in $(seq 1 100); do
    if fed /_matrix/federation/v1/version > /dev/null 2>&1; then break; fi
    sleep 0.1
done
if ! version=$(fed /_matrix/federation/v1/version); then
    echo "the federation listener never answered over TLS trusted through the CA" >&2
    cat "$WORK/sandcat.log" >&2
    exit 1
fi
keys=$(fed /_matrix/key/v2/server)
name=$(printf '%s' "$keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["server_name"])')
if [ "$name" != hs1 ]; then
    echo "the key document names $name, not hs1: $keys" >&2
    exit 1
fi
echo "ok: Complement entrypoint: hs1 serves federation under the CA's certificate ($version)"
