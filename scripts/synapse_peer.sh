#!/usr/bin/env bash
# Starts Synapse as a federation peer on loopback, for the interop tests:
#   scripts/synapse_peer.sh DIR PORT VENV
# Synapse is named localhost:PORT and serves the client and federation APIs on one TLS listener
# on that port (a self-signed certificate made in DIR). It federates with servers on loopback
# (its IP blocklists emptied, certificates not verified), asks no key server, retries a peer
# within seconds, and lets the tests register and send as fast as they like. Installs Synapse
# into VENV first when it is not there. Prints the PID once the client API answers.
set -euo pipefail
DIR=$1
PORT=$2
VENV=$3
if ! "$VENV/bin/python" -c 'import synapse' > /dev/null 2>&1; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'matrix-synapse>=1.140'
fi
mkdir -p "$DIR"
cd "$DIR"
if [ ! -f homeserver.yaml ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout tls.key -out tls.crt > /dev/null 2>&1
    "$VENV/bin/python" -m synapse.app.homeserver --server-name "localhost:$PORT" \
        --config-path homeserver.yaml --generate-config --report-stats=no > /dev/null
    "$VENV/bin/python" - "$PORT" "$PWD" <<'PY'
import sys
import yaml

port, here = int(sys.argv[1]), sys.argv[2]
with open("homeserver.yaml") as f:
    config = yaml.safe_load(f)
fast = {"per_second": 10000, "burst_count": 100000}
config.update({
    "listeners": [{
        "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
        "x_forwarded": False, "resources": [{"names": ["client", "federation"], "compress": False}],
    }],
    "tls_certificate_path": f"{here}/tls.crt",
    "tls_private_key_path": f"{here}/tls.key",
    "federation_verify_certificates": False,
    "ip_range_blacklist": [],
    "federation_ip_range_blacklist": [],
    "ip_range_whitelist": ["127.0.0.1"],
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "report_stats": False,
    "presence": {"enabled": True},
    "allow_public_rooms_over_federation": True,
    "room_list_publication_rules": [{"action": "allow"}],
    "federation": {
        "destination_min_retry_interval": "1s", "destination_max_retry_interval": "5s",
        "max_long_retry_delay": "5s", "max_short_retry_delay": "1s",
    },
    "rc_federation": {"window_size": 1000, "sleep_limit": 1000, "sleep_delay": 1,
                      "reject_limit": 100000, "concurrent": 100},
    "rc_message": fast, "rc_registration": fast, "rc_room_creation": fast,
    "rc_login": {k: fast for k in ("address", "account", "failed_attempts")},
    "rc_joins": {"local": fast, "remote": fast},
    "rc_joins_per_room": fast,
    "rc_invites": {"per_room": fast, "per_user": fast, "per_issuer": fast},
})
with open("homeserver.yaml", "w") as f:
    yaml.safe_dump(config, f)
PY
fi
"$VENV/bin/python" -m synapse.app.homeserver -c homeserver.yaml > synapse.out 2>&1 &
PID=$!
for _ in $(seq 1 240); do
    if curl -skf "https://localhost:$PORT/_matrix/client/versions" > /dev/null; then
        echo "$PID"
        exit 0
    fi
    if ! kill -0 "$PID" 2> /dev/null; then
        break
    fi
    sleep 0.5
done
echo "Synapse did not start on port $PORT; see $DIR/homeserver.log and $DIR/synapse.out" >&2
kill "$PID" 2> /dev/null || true
exit 1
