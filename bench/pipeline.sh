#!/usr/bin/env bash
# Send throughput on the pipeline with 1, 2 and 3 instances, beside the embedded profile, in
# one run: `sandcat-bench run --workloads send` with its clients spread over the instances.
#
#   bench/pipeline.sh            10 s per target, 64 clients in 16 rooms
#   bench/pipeline.sh --quick    5 s per target, 32 clients in 8 rooms
#
# Uses the services scripts/services.sh starts (PostgreSQL, Kafka, Redis on loopback); each
# target gets a fresh PostgreSQL schema and Kafka topic. The inbox stays in PostgreSQL
# ([inbox] embedded): the MongoDB stand-in of the tests slows down as a collection grows. Writes bench/results/pipeline-*.json
# and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ARGS=(--seconds 10 --clients 64 --rooms 16)
[ "${1:-}" = "--quick" ] && ARGS=(--seconds 5 --clients 32 --rooms 8)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
scripts/services.sh >&2
cargo build --release -p sandcat -p sandcat-bench --bin sandcat --bin sandcat-bench >&2
BIN="$CARGO_TARGET_DIR/release"
PG="${SANDCAT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/sandcat_test}"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
OUT="$ROOT/bench/results"
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME DATA [env...]: starts an instance and waits for /health; its URL is in $URL.
start() {
    local name=$1 data=$2; shift 2
    local port; port=$(free_port)
    env SANDCAT_LISTEN="127.0.0.1:$port" SANDCAT_DATA_DIR="$data" SANDCAT_REGISTRATION_ENABLED=true \
        SANDCAT_RATE_LIMIT_PER_SECOND=0 SANDCAT_LOG=warn "$@" "$BIN/sandcat" serve >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    URL="http://127.0.0.1:$port"
    for _ in $(seq 1 300); do
        curl -sf "$URL/health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "$name did not start:" >&2; cat "$WORK/$name.log" >&2; return 1
}

# cpu NAME PID...: CPU seconds (user + system) the processes used so far, as NAME=seconds.
cpu() {
    local name=$1; shift
    python3 - "$name" "$@" <<'PY'
import os, sys
tck = os.sysconf("SC_CLK_TCK")
total = 0
for p in sys.argv[2:]:
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        pass
print(f"{sys.argv[1]}={total / tck:.2f}")
PY
}

# usage: snapshot FILE: CPU seconds of every process of the run so far.
snapshot() {
    {
        cpu sandcat "${PIDS[@]}"
        cpu broker $(pgrep -f 'tansu broker' || true)
        cpu postgresql $(pgrep -x postgres || true)
        cpu redis $(pgrep -x redis-server || true)
    } >"$1"
}

stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }

# cpu_report NAME: CPU seconds per 1,000 events of each process during NAME's run, added to
# its result file. The load generator's own CPU is not counted.
cpu_report() {
    python3 - "$OUT/$1.json" "$WORK/cpu-before" "$WORK/cpu-after" <<'PY'
import json, sys
path, before, after = sys.argv[1:4]
read = lambda f: {k: float(v) for k, v in (l.strip().split("=") for l in open(f) if "=" in l)}
b, a = read(before), read(after)
r = json.load(open(path))
events = r["workloads"]["send"].get("count") or 0
r["cpu_s_per_1000_events"] = {k: round((a[k] - b.get(k, 0)) / events * 1000, 3) if events else None for k in a}
json.dump(r, open(path, "w"), indent=2)
PY
}

# --- the embedded profile, for reference
start embedded "$WORK/embedded"
snapshot "$WORK/cpu-before"
"$BIN/sandcat-bench" run --name pipeline-embedded --url "$URL" --workloads send "${ARGS[@]}" --out "$OUT/pipeline-embedded.json"
snapshot "$WORK/cpu-after"
cpu_report pipeline-embedded
stop_all

# --- the pipeline with 1, 2 and 3 instances
for N in 1 2 3; do
    SCHEMA="bench_$(date +%s)_$N"
    psql "$PG" -qc "CREATE SCHEMA $SCHEMA"
    DATA="$WORK/pipeline-$N"
    mkdir -p "$DATA"
    PIPE=(SANDCAT_STORAGE_BACKEND=postgres "SANDCAT_STORAGE_URL=$PG?options[search_path]=$SCHEMA"
          SANDCAT_BUS_BACKEND=kafka "SANDCAT_BUS_BROKERS=${SANDCAT_TEST_KAFKA:-127.0.0.1:9092}"
          "SANDCAT_BUS_TOPIC=bench.$SCHEMA" "SANDCAT_BUS_GROUP=bench.$SCHEMA" SANDCAT_BUS_PARTITIONS=12
          SANDCAT_CACHE_BACKEND=redis "SANDCAT_CACHE_URL=${SANDCAT_TEST_REDIS:-redis://127.0.0.1:6379}")
    URLS=""
    for i in $(seq 1 "$N"); do
        start "p$N-$i" "$DATA" "${PIPE[@]}"
        URLS="${URLS:+$URLS,}$URL"
    done
    sleep 4 # let the consumer group settle before measuring
    snapshot "$WORK/cpu-before"
    "$BIN/sandcat-bench" run --name "pipeline-$N" --url "$URLS" --workloads send "${ARGS[@]}" --out "$OUT/pipeline-$N.json"
    snapshot "$WORK/cpu-after"
    cpu_report "pipeline-$N"
    stop_all
done

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| target | events/s | p50 ms | p99 ms | errors | missing or duplicated | CPU s / 1,000 events: sandcat, broker, PostgreSQL, Redis |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name in ["pipeline-embedded", "pipeline-1", "pipeline-2", "pipeline-3"]:
    r = json.load(open(f"{out}/{name}.json"))
    s = r["workloads"]["send"]
    c = r.get("cpu_s_per_1000_events", {})
    cpu = ", ".join(str(c.get(k, "-")) for k in ["sandcat", "broker", "postgresql", "redis"])
    label = {"pipeline-embedded": "embedded (SQLite, 1 process)"}.get(name, name.replace("pipeline-", "pipeline, ") + " instance(s)")
    print(f"| {label} | {s.get('throughput')} | {s.get('p50_ms')} | {s.get('p99_ms')} | {s.get('errors')} | {s.get('missing_or_duplicated')} | {cpu} |")
PY
