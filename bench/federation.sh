#!/usr/bin/env bash
# Federation benchmark: Sandcat (release build) and two Synapses, each localhost:PORT with a
# TLS listener, federating over loopback; bench/federation.py drives them with matrix-nio.
#
#   bench/federation.sh [MEMBERS] [MESSAGES]    defaults: 200 members, 50 messages
#
# Synapse comes from PyPI into $SYNAPSE_VENV (default bench/.venv-synapse), matrix-nio into
# $SANDCAT_TEST_VENV (default .venv). Writes bench/results/federation.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MEMBERS=${1:-200}
MESSAGES=${2:-50}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SYNAPSE_VENV="${SYNAPSE_VENV:-$ROOT/bench/.venv-synapse}"
VENV="${SANDCAT_TEST_VENV:-$ROOT/.venv}"
if ! "$VENV/bin/python" -c 'import nio' > /dev/null 2>&1; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'matrix-nio>=0.25,<0.27' aiohttp
fi
cargo build --release -p sandcat --bin sandcat >&2
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

S1=$(free_port); S2=$(free_port)
PIDS+=("$(scripts/synapse_peer.sh "$WORK/syn1" "$S1" "$SYNAPSE_VENV")")
PIDS+=("$(scripts/synapse_peer.sh "$WORK/syn2" "$S2" "$SYNAPSE_VENV")")

FED=$(free_port); CLIENT=$(free_port)
PIDS+=("$(scripts/sandcat_peer.sh "$CARGO_TARGET_DIR/release/sandcat" "$WORK/sandcat" "$FED" "$CLIENT" \
    SANDCAT_LOG=warn SANDCAT_FEDERATION_RATE_LIMIT_PER_SECOND=0)")

mkdir -p bench/results
"$VENV/bin/python" bench/federation.py "http://127.0.0.1:$CLIENT" "localhost:$FED" \
    "https://localhost:$S1" "localhost:$S1" "https://localhost:$S2" "localhost:$S2" \
    "$MEMBERS" "$MESSAGES" bench/results/federation.json
