#!/usr/bin/env bash
# Sandcat's test command: installs what the tests need on a Debian machine, then runs every
# test — the Rust workspace (end-to-end tests on real SQLite files, backend contract tests on
# SQLite and PostgreSQL, the two-instance scale-out test), the end-to-end tests once more on
# the pipeline services (PostgreSQL, Kafka, Redis, S3), and the interop tests that
# drive the real binary with third-party software: matrix-nio, matrix-js-sdk and
# matrix-rust-sdk (clients),
# mautrix (the application service framework of the mautrix bridges), and Synapse (the
# reference homeserver, installed from PyPI) as a federation peer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed. Install Rust (1.89 or newer) with rustup: https://rustup.rs" >&2
    exit 1
fi

# Python with venv, for the matrix-nio and mautrix interop tests.
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
    else
        echo "python3 with venv is needed: sudo apt-get install python3 python3-venv" >&2
        exit 1
    fi
fi
VENV="${SANDCAT_TEST_VENV:-$ROOT/.venv}"
# matrix-nio with its end-to-end encryption (vodozemac, as a wheel).
if ! "$VENV/bin/python" -c 'from nio.crypto import ENCRYPTION_ENABLED; assert ENCRYPTION_ENABLED; import aiohttp, mautrix, yaml' >/dev/null 2>&1; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'matrix-nio[e2e]>=0.25,<0.27' 'mautrix>=0.21,<0.22' aiohttp pyyaml
fi

# Node.js, for the matrix-js-sdk interop test (the SDK under Element Web).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "Node.js 20 and npm are needed: sudo apt-get install nodejs npm" >&2
        exit 1
    fi
fi
if [ ! -d tests/interop/js/node_modules/matrix-js-sdk ]; then
    (cd tests/interop/js && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== docker-compose.yml (no Docker engine needed for this check)"
"$VENV/bin/python" scripts/check_compose.py

echo "== services the tests talk to (reused when already running)"
scripts/services.sh

echo "== cargo test --workspace"
cargo test --workspace

echo "== the end-to-end tests again, on the pipeline (PostgreSQL, Kafka, Redis, S3)"
SANDCAT_TEST_PROFILE=pipeline cargo test --workspace --test client_api --test sandcat_api --test appservice --test media --test hardening --test oauth --test sandcat_delivery --test federation --test federation_peer --test federation_invites --test federation_edus --test federation_keys --test federation_acl --test federation_sandcat --test federation_media --test federation_malicious --test join_rules --test spaces --test key_backup --test discovery --test threads --test reports --test sliding_sync --test refresh_tokens --test mutual_rooms --test room_upgrade --test search --test profile_fields --test push --test registration_tokens --test moderation --test email --test url_preview --test identity_server

echo "== interop: matrix-nio, matrix-js-sdk and mautrix against the sandcat binary"
cargo build --bin sandcat
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
# The mail relay is the js-sdk accounts check's SMTP receiver; link previews may fetch its
# page on loopback.
SMTP_PORT=$(free_port)
DATA=$(mktemp -d)
SANDCAT_LISTEN="127.0.0.1:$PORT" SANDCAT_DATA_DIR="$DATA" SANDCAT_REGISTRATION_ENABLED=true SANDCAT_LOG=warn \
    SANDCAT_RATE_LIMIT_PER_SECOND=0 SANDCAT_EMAIL_SMTP_HOST=127.0.0.1 SANDCAT_EMAIL_SMTP_PORT="$SMTP_PORT" \
    SANDCAT_EMAIL_SMTP_SECURITY=none SANDCAT_MEDIA_URL_PREVIEW_ALLOW_PRIVATE=true \
    "$CARGO_TARGET_DIR/debug/sandcat" serve > "$DATA/sandcat.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/_matrix/client/versions')" 2>/dev/null; then break; fi
    sleep 0.1
done
fail() {
    echo "--- sandcat log" >&2
    cat "$DATA/sandcat.log" >&2
    exit 1
}
"$VENV/bin/python" tests/interop/nio_interop.py "http://127.0.0.1:$PORT" || fail
(cd tests/interop/js && node js_sdk_interop.mjs "http://127.0.0.1:$PORT" 2>&1 | grep -v 'MatrixRTCSessionManager\|default global .* push rule') || fail
(cd tests/interop/js && node js_sdk_accounts.mjs "http://127.0.0.1:$PORT" "$SMTP_PORT") || fail
"$VENV/bin/python" tests/interop/mautrix_echo.py "http://127.0.0.1:$PORT" "$CARGO_TARGET_DIR/debug/sandcat" "$DATA" || fail

echo "== the Complement image's entrypoint, without Docker (a CA-signed federation listener)"
scripts/complement_check.sh "$CARGO_TARGET_DIR/debug/sandcat"

echo "== interop: matrix-rust-sdk (the SDK under Element X: sliding sync, timeline, encryption)"
# A crate of its own (the SDK pins another ruma), built into a target directory of its own.
RUST_SDK_TARGET="${SANDCAT_RUST_SDK_TARGET:-$CARGO_TARGET_DIR/rust-sdk}"
(cd tests/interop/rust_sdk && CARGO_TARGET_DIR="$RUST_SDK_TARGET" cargo build --locked --quiet)
"$RUST_SDK_TARGET/debug/sandcat-rust-sdk-interop" "http://127.0.0.1:$PORT" || fail

echo "== interop: federation with Synapse (matrix-nio on both servers)"
SYNAPSE_VENV="${SANDCAT_SYNAPSE_VENV:-$ROOT/.venv-synapse}"
scripts/synapse_interop.sh "$CARGO_TARGET_DIR/debug/sandcat" "$VENV/bin/python" "$SYNAPSE_VENV"
