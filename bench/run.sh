#!/usr/bin/env bash
# Sandcat against Synapse, side by side, in one run.
#
#   bench/run.sh            full run: Sandcat (embedded), a bare axum baseline, Synapse on SQLite
#                           and, when PostgreSQL answers on 127.0.0.1:5432, Synapse on PostgreSQL.
#                           Writes bench/results/*.json and BENCHMARKS.md.
#   bench/run.sh --quick    the same with smaller workloads (a few minutes).
#   bench/run.sh --smoke    Sandcat only, a few seconds; checks the harness (CI runs this).
#
# Synapse is installed from PyPI into a venv ($SYNAPSE_VENV, default bench/.venv-synapse) when
# missing. Every server listens on 127.0.0.1 only. Rate limits are raised on both servers so
# they do not dominate.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=full
case "${1:-}" in
    --quick) MODE=quick ;;
    --smoke) MODE=smoke ;;
    "") ;;
    *) echo "usage: bench/run.sh [--quick|--smoke]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -p sandcat -p sandcat-bench --bin sandcat --bin sandcat-bench >&2
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

case $MODE in
    full) ARGS=(--seconds 10) ;;
    quick) ARGS=(--seconds 5 --clients 32 --rooms 8 --receivers 8 --fanout-messages 100 --sync-rooms 50 --members 200) ;;
    smoke) ARGS=(--seconds 2 --clients 8 --rooms 4 --receivers 4 --fanout-messages 20 --sync-rooms 5 --members 20) ;;
esac
if [ "$MODE" = smoke ]; then OUT="$WORK/results"; else OUT="$ROOT/bench/results"; fi
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a server in the background and waits for /versions; prints "PID COLD_START_MS".
start_server() {
    local url=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    "$@" > "$WORK/server-$RANDOM.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 600); do
        if curl -sf "$url/_matrix/client/versions" > /dev/null 2>&1; then
            t1=$(date +%s%N)
            echo "$pid $(( (t1 - t0) / 1000000 ))"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "server exited: $*" >&2; return 1; }
        sleep 0.01
    done
    echo "server did not answer: $*" >&2
    return 1
}

stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Adds the cold start time to a result file.
add_cold_start() { python3 - "$1" "$2" <<'PY'
import json, sys
p, ms = sys.argv[1], int(sys.argv[2])
d = json.load(open(p)); d["cold_start_ms"] = ms; json.dump(d, open(p, "w"), indent=2)
PY
}

run_bench() { # name url pid [extra args...]
    local name=$1 url=$2 pid=$3; shift 3
    sleep 1 # let the server settle before reading its idle memory
    "$BIN/sandcat-bench" run --name "$name" --url "$url" --pid "$pid" "${ARGS[@]}" "$@" --out "$OUT/$name.json"
}

# --- Sandcat, embedded default
PORT=$(free_port)
read -r PID COLD < <(start_server "http://127.0.0.1:$PORT" env SANDCAT_LISTEN="127.0.0.1:$PORT" SANDCAT_DATA_DIR="$WORK/sandcat" \
    SANDCAT_REGISTRATION_ENABLED=true SANDCAT_RATE_LIMIT_PER_SECOND=0 SANDCAT_LOG=warn "$BIN/sandcat" serve)
run_bench sandcat "http://127.0.0.1:$PORT" "$PID" --workloads versions,send,fanout,initial-sync,login,register,join,native
add_cold_start "$OUT/sandcat.json" "$COLD"
stop_server "$PID"
FILES=("$OUT/sandcat.json")

if [ "$MODE" = smoke ]; then
    "$BIN/sandcat-bench" report "${FILES[@]}"
    echo "smoke benchmark: 1 passed, 0 failed"
    exit 0
fi

# --- Baseline: a bare axum endpoint (the limit of loopback HTTP on this machine)
PORT=$(free_port)
read -r PID COLD < <(start_server "http://127.0.0.1:$PORT" "$BIN/sandcat-bench" hello --listen "127.0.0.1:$PORT")
"$BIN/sandcat-bench" run --name axum-hello --url "http://127.0.0.1:$PORT" --pid "$PID" --workloads versions "${ARGS[@]}" --out "$OUT/axum-hello.json"
stop_server "$PID"

# --- Synapse
SYNAPSE_VENV="${SYNAPSE_VENV:-$ROOT/bench/.venv-synapse}"
if ! "$SYNAPSE_VENV/bin/python" -c 'import synapse, psycopg2' > /dev/null 2>&1; then
    python3 -m venv "$SYNAPSE_VENV"
    "$SYNAPSE_VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse[postgres]"
fi
synapse_config() { # dir port [postgres-dbname]
    local dir=$1 port=$2 db=${3:-}
    mkdir -p "$dir"
    (cd "$dir" && "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver --server-name localhost \
        --config-path homeserver.yaml --generate-config --report-stats=no > /dev/null)
    python3 - "$dir/homeserver.yaml" "$port" "$db" <<'PY'
import sys, re
path, port, db = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
text = re.sub(r"port: 8008", f"port: {port}", text)
text = re.sub(r"bind_addresses: \[.*?\]", "bind_addresses: ['127.0.0.1']", text)
if db:
    text = re.sub(r"database:\n(  .*\n)+", "", text)
text = text.rstrip("\n") + "\n"
high = "{per_second: 100000, burst_count: 1000000}"
text += f"""
enable_registration: true
enable_registration_without_verification: true
trusted_key_servers: []
suppress_key_server_warning: true
presence: {{enabled: true}}
rc_message: {high}
rc_registration: {high}
rc_registration_token_validity: {high}
rc_login: {{address: {high}, account: {high}, failed_attempts: {high}}}
rc_joins: {{local: {high}, remote: {high}}}
rc_joins_per_room: {high}
rc_invites: {{per_room: {high}, per_user: {high}, per_issuer: {high}}}
rc_room_creation: {high}
rc_3pid_validation: {high}
rc_presence: {{per_user: {high}}}
rc_delayed_event_mgmt: {high}
"""
if db:
    text += f"""database:
  name: psycopg2
  args: {{user: postgres, dbname: {db}, host: 127.0.0.1, port: 5432, cp_min: 5, cp_max: 10}}
"""
open(path, "w").write(text)
PY
}
run_synapse() { # name [postgres-dbname]
    local name=$1 db=${2:-}
    local port; port=$(free_port)
    synapse_config "$WORK/$name" "$port" "$db"
    read -r PID COLD < <(start_server "http://127.0.0.1:$port" env -C "$WORK/$name" \
        "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c homeserver.yaml)
    run_bench "$name" "http://127.0.0.1:$port" "$PID" || echo "$name: some workloads failed (see the table)" >&2
    add_cold_start "$OUT/$name.json" "$COLD"
    stop_server "$PID"
    FILES+=("$OUT/$name.json")
}
run_synapse synapse-sqlite
if command -v psql > /dev/null && psql -h 127.0.0.1 -U postgres -c 'select 1' > /dev/null 2>&1; then
    DB="synapse_bench_$$"
    psql -h 127.0.0.1 -U postgres -q -c "CREATE DATABASE $DB ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"
    run_synapse synapse-postgres "$DB"
    psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE $DB" || true
fi
FILES+=("$OUT/axum-hello.json")

MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); mode: $MODE; $(date -u +%Y-%m-%d)"
# The sections after the table (initial sync, the send path, scale-out from bench/pipeline.sh
# and `sandcat-bench store`, federation from bench/federation.sh) are written by hand from
# their own runs: keep them.
KEPT=$(sed -n '/^## /,$p' "$ROOT/BENCHMARKS.md" 2>/dev/null || true)
{
    echo "# Benchmarks"
    echo
    echo "Reproduce with \`bench/run.sh\` (or \`bench/run.sh --quick\`). Each column is one server"
    echo "on this machine in the same run, driven over loopback HTTP by \`sandcat-bench\` with the"
    echo "same workloads; every acknowledged event is checked to arrive (a run with losses is"
    echo "reported as failed). Raw results: \`bench/results/*.json\`."
    echo
    "$BIN/sandcat-bench" report "${FILES[@]}" --machine "$MACHINE"
    if [ -n "$KEPT" ]; then
        echo
        echo "$KEPT"
    fi
} > "$ROOT/BENCHMARKS.md"
cat "$ROOT/BENCHMARKS.md"
