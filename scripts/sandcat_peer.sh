#!/usr/bin/env bash
# Starts the sandcat binary as a federation peer on loopback, for the interop tests and the
# federation benchmark:
#   scripts/sandcat_peer.sh BINARY DIR FEDERATION_PORT CLIENT_PORT [VAR=VALUE...]
# Named localhost:FEDERATION_PORT, with its TLS listener there (a self-signed certificate made
# in DIR) and the client API on 127.0.0.1:CLIENT_PORT; data in DIR, log in DIR/sandcat.log;
# other servers reached on loopback without checking their certificates; open registration;
# extra VAR=VALUE settings last. Prints the PID once the client API answers.
set -euo pipefail
BIN=$1
DIR=$2
FED=$3
CLIENT=$4
shift 4
mkdir -p "$DIR/data"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$DIR/tls.key" -out "$DIR/tls.crt" > /dev/null 2>&1
env SANDCAT_SERVER_NAME="localhost:$FED" SANDCAT_LISTEN="127.0.0.1:$CLIENT" \
    SANDCAT_DATA_DIR="$DIR/data" SANDCAT_REGISTRATION_ENABLED=true SANDCAT_LOG=info \
    SANDCAT_RATE_LIMIT_PER_SECOND=0 \
    SANDCAT_FEDERATION_LISTEN="127.0.0.1:$FED" \
    SANDCAT_FEDERATION_TLS_CERTIFICATE="$DIR/tls.crt" \
    SANDCAT_FEDERATION_TLS_PRIVATE_KEY="$DIR/tls.key" \
    SANDCAT_FEDERATION_VERIFY_CERTIFICATES=false \
    SANDCAT_FEDERATION_ALLOW_PRIVATE_DESTINATIONS=true \
    "$@" "$BIN" serve > "$DIR/sandcat.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do
    if curl -sf "http://127.0.0.1:$CLIENT/_matrix/client/versions" > /dev/null; then
        echo "$PID"
        exit 0
    fi
    if ! kill -0 "$PID" 2> /dev/null; then
        break
    fi
    sleep 0.1
done
echo "sandcat did not start; see $DIR/sandcat.log" >&2
kill "$PID" 2> /dev/null || true
exit 1
