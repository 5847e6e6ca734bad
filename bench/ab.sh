#!/usr/bin/env bash
# Two builds of Sandcat against each other: is a change's hot path slower?
#
#   bench/ab.sh OLD_REV NEW_REV [ROUNDS] [WORKLOADS]
#
# Builds both revisions in release (each in a worktree under $AB_DIR, sharing one target
# directory so the second build is incremental), then runs `sandcat-bench` on the embedded
# profile against each, alternating OLD and NEW for ROUNDS rounds (default 4), each run on a
# fresh data directory, and prints every run and the medians. WORKLOADS defaults to
# `send,fanout` (send rate and latency; send→/sync delivery to 16 long-polls). Every
# acknowledged event is checked to arrive. Runs on one machine are noisy: compare medians
# over several rounds, never one run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OLD=${1:?usage: bench/ab.sh OLD_REV NEW_REV [ROUNDS] [WORKLOADS]}
NEW=${2:?usage: bench/ab.sh OLD_REV NEW_REV [ROUNDS] [WORKLOADS]}
ROUNDS=${3:-4}
WORKLOADS=${4:-send,fanout}
AB_DIR=${AB_DIR:-${TMPDIR:-/tmp}/sandcat-ab}
TARGET=${CARGO_TARGET_DIR:-$AB_DIR/target}
mkdir -p "$AB_DIR"

build() { # label rev
    local tree="$AB_DIR/tree-$1"
    git -C "$ROOT" worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
    git -C "$ROOT" worktree add --detach --force "$tree" "$2" >/dev/null
    (cd "$tree" && CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p sandcat -p sandcat-bench --bin sandcat --bin sandcat-bench)
    mkdir -p "$AB_DIR/bin-$1"
    cp "$TARGET/release/sandcat" "$TARGET/release/sandcat-bench" "$AB_DIR/bin-$1/"
    git -C "$ROOT" worktree remove --force "$tree"
}
build old "$OLD"
build new "$NEW"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RESULTS="$AB_DIR/results"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
for r in $(seq 1 "$ROUNDS"); do
    for v in old new; do
        bin="$AB_DIR/bin-$v"
        port=$(free_port)
        data=$(mktemp -d)
        SANDCAT_LISTEN="127.0.0.1:$port" SANDCAT_DATA_DIR="$data" SANDCAT_REGISTRATION_ENABLED=true \
            SANDCAT_RATE_LIMIT_PER_SECOND=0 SANDCAT_LOG=warn "$bin/sandcat" serve >"$RESULTS/server-$v-$r.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 600); do
            curl -sf "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1 && break
            sleep 0.01
        done
        sleep 1
        "$bin/sandcat-bench" run --name "$v-$r" --url "http://127.0.0.1:$port" --pid "$pid" \
            --seconds 10 --workloads "$WORKLOADS" --out "$RESULTS/$v-$r.json" >"$RESULTS/bench-$v-$r.log" 2>&1 ||
            echo "run $v-$r failed (see $RESULTS/bench-$v-$r.log)" >&2
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rm -rf "$data"
    done
done

python3 - "$RESULTS" "$ROUNDS" "$OLD" "$NEW" <<'PY'
import json, statistics, sys
results, rounds, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
metrics = [("send", "throughput", "send (events/s)"), ("send", "p50_ms", "send p50 (ms)"),
           ("send", "p99_ms", "send p99 (ms)"), ("fanout", "p50_ms", "delivery p50 (ms)"),
           ("fanout", "p99_ms", "delivery p99 (ms)")]
runs = {v: [json.load(open(f"{results}/{v}-{r}.json")) for r in range(1, rounds + 1)] for v in ("old", "new")}
for v in ("old", "new"):
    for d in runs[v]:
        if d.get("failed"):
            sys.exit(f"{d['target']}: failed workloads {d['failed']}")
print(f"old = {old}, new = {new}, {rounds} rounds, alternated")
print("| metric | old (runs) | new (runs) | old median | new median |")
print("| --- | --- | --- | --- | --- |")
for w, k, name in metrics:
    vals = {v: [d["workloads"][w][k] for d in runs[v] if w in d["workloads"]] for v in ("old", "new")}
    if not vals["old"]:
        continue
    fmt = lambda xs: ", ".join(f"{x:g}" for x in xs)
    print(f"| {name} | {fmt(vals['old'])} | {fmt(vals['new'])} | "
          f"{statistics.median(vals['old']):g} | {statistics.median(vals['new']):g} |")
PY
