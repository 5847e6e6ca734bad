#!/usr/bin/env bash
# Federation interop with Synapse: starts Synapse (scripts/synapse_peer.sh) and the sandcat
# binary (scripts/sandcat_peer.sh), each named localhost:PORT with a TLS federation listener on that port, and drives a
# user on each with matrix-nio (tests/interop/synapse_federation.py).
#   scripts/synapse_interop.sh SANDCAT_BINARY PYTHON_WITH_NIO SYNAPSE_VENV
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
PY=$2
SYNAPSE_VENV=$3
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
SANDCAT_PID=""
SYNAPSE_PID=""
cleanup() {
    for pid in $SANDCAT_PID $SYNAPSE_PID; do
        kill "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "--- sandcat log" >&2
    tail -n 200 "$WORK/sandcat/sandcat.log" >&2 || true
    echo "--- synapse log" >&2
    grep -E ' - (WARNING|ERROR) - ' "$WORK/synapse/homeserver.log" | tail -n 100 >&2 || true
    exit 1
}

SYN_PORT=$(free_port)
SYNAPSE_PID=$(scripts/synapse_peer.sh "$WORK/synapse" "$SYN_PORT" "$SYNAPSE_VENV") || fail

FED_PORT=$(free_port)
CLIENT_PORT=$(free_port)
SANDCAT_PID=$(scripts/sandcat_peer.sh "$BIN" "$WORK/sandcat" "$FED_PORT" "$CLIENT_PORT") || fail

"$PY" tests/interop/synapse_federation.py "http://127.0.0.1:$CLIENT_PORT" "localhost:$FED_PORT" \
    "https://localhost:$SYN_PORT" "localhost:$SYN_PORT" || fail
