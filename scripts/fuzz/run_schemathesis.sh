#!/usr/bin/env bash
# Bounded OpenAPI fuzz run of the real server binary with schemathesis.
#
#   scripts/fuzz/run_schemathesis.sh BIN [MAX_EXAMPLES]
#
# Bundles the Matrix client-server OpenAPI spec (scripts/fuzz/bundle_spec.py),
# starts `BIN serve` on a free loopback port with a throw-away data dir,
# registers a user, and runs schemathesis against every operation of the
# bundle (minus the ones that would end the fuzz session) with the only check
# `not_a_server_error`. Exits 1 when any request got a 5xx answer and prints
# each such request (method, URL, body, response) and the server log; exits 2
# when the fuzz run itself could not be done.
#
# Environment:
#   SANDCAT_FUZZ_VENV     venv with schemathesis (default /var/cache/sandcat-fuzz-venv)
#   SANDCAT_SPEC_DIR      split client-server spec (default <repo>/../shared/matrix-spec-api/client-server)
#   SANDCAT_FUZZ_PHASES   schemathesis phases (default examples,coverage,fuzzing; the
#                         coverage phase is deterministic, finite, and not bounded by MAX_EXAMPLES)
#   SANDCAT_FUZZ_SEED     random seed (default 1)
#   SANDCAT_FUZZ_OUT      keep the bundle, reports and server log here (default: a temp dir,
#                         removed on success, kept and printed on failure)
#   SANDCAT_FUZZ_MAX_PRINT  5xx requests printed per operation (default 20; all are in the HAR)
#   SANDCAT_FUZZ_STRICT   1: also exit 1 when schemathesis reports errors (timeouts, ...)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BIN [MAX_EXAMPLES]" >&2
    exit 2
fi
BIN=$(realpath "$1")
MAX_EXAMPLES=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${SANDCAT_FUZZ_VENV:-/var/cache/sandcat-fuzz-venv}
SPEC_DIR=${SANDCAT_SPEC_DIR:-$REPO/../shared/matrix-spec-api/client-server}
PHASES=${SANDCAT_FUZZ_PHASES:-examples,coverage,fuzzing}
SEED=${SANDCAT_FUZZ_SEED:-1}
MAX_PRINT=${SANDCAT_FUZZ_MAX_PRINT:-20}

if [ ! -x "$BIN" ]; then
    echo "run_schemathesis: server binary $BIN is missing or not executable" >&2
    exit 2
fi
if ! ls "$SPEC_DIR"/*.yaml >/dev/null 2>&1; then
    echo "run_schemathesis: no OpenAPI files in SANDCAT_SPEC_DIR=$SPEC_DIR" >&2
    echo "  (the split Matrix client-server spec, e.g. shared/matrix-spec-api/client-server)" >&2
    exit 2
fi

# --- venv with schemathesis (idempotent) ------------------------------------
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "version $SCHEMATHESIS_VERSION" \
    || ! "$VENV/bin/python" -c 'import yaml' >/dev/null 2>&1; then
    echo "run_schemathesis: installing schemathesis $SCHEMATHESIS_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" pyyaml
fi
PY="$VENV/bin/python"

# --- work dir ---------------------------------------------------------------
if [ -n "${SANDCAT_FUZZ_OUT:-}" ]; then
    WORK=$SANDCAT_FUZZ_OUT
    rm -rf "$WORK/data" "$WORK/report" "$WORK/.schemathesis" "$WORK/.hypothesis"
    mkdir -p "$WORK"
    KEEP=1
else
    WORK=$(mktemp -d /tmp/sandcat-fuzz.XXXXXX)
    KEEP=0
fi
mkdir -p "$WORK/data" "$WORK/report"
SERVER_LOG=$WORK/server.log
SERVER_PID=
RESULT=2

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 0 ] && [ "$RESULT" = 0 ]; then
        rm -rf "$WORK"
    else
        echo "run_schemathesis: reports, bundle and server log kept in $WORK" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dump_server_log() {
    echo "================ server log ($SERVER_LOG) ================"
    if [ "$(wc -l <"$SERVER_LOG")" -le 2000 ]; then
        cat "$SERVER_LOG"
    else
        echo "(long log: its 'request failed'/panic lines, then the last 500 lines)"
        grep -n -E 'request failed|panick|ERROR' "$SERVER_LOG" | head -n 500 || true
        echo "..."
        tail -n 500 "$SERVER_LOG"
    fi
    echo "================ end of server log ================"
}

# --- bundle -----------------------------------------------------------------
BUNDLE=$WORK/client-server.json
"$PY" "$HERE/bundle_spec.py" "$SPEC_DIR" "$BUNDLE"
# Fuzz-only tweak: cap the long-poll `timeout` query parameters (/sync,
# /events) so positive cases do not sit in a long poll until the request
# timeout; the server caps them at 60 s anyway, and negative cases may still
# go over (they then show up as request timeouts, not as 5xx).
"$PY" - "$BUNDLE" <<'EOF'
import json, sys
path = sys.argv[1]
doc = json.load(open(path))
for item in doc["paths"].values():
    for op in item.values():
        if not isinstance(op, dict):
            continue
        for p in op.get("parameters", []):
            if p.get("in") == "query" and p.get("name") == "timeout":
                p.setdefault("schema", {}).update({"minimum": 0, "maximum": 1000})
json.dump(doc, open(path, "w"), indent=1)
EOF

# --- server -----------------------------------------------------------------
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
SANDCAT_LISTEN=127.0.0.1:$PORT \
SANDCAT_DATA_DIR=$WORK/data \
SANDCAT_REGISTRATION_ENABLED=true \
SANDCAT_RATE_LIMIT_PER_SECOND=0 \
SANDCAT_MAX_LOGIN_FAILURES=0 \
SANDCAT_LOG=warn \
    "$BIN" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
for i in $(seq 300); do
    if curl -fsS -o /dev/null "$BASE/_matrix/client/versions" 2>/dev/null; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "run_schemathesis: the server exited during start-up" >&2
        dump_server_log >&2
        exit 2
    fi
    if [ "$i" = 300 ]; then
        echo "run_schemathesis: the server did not answer /_matrix/client/versions within 30 s" >&2
        dump_server_log >&2
        exit 2
    fi
    sleep 0.1
done

REGISTER=$(curl -sS -X POST -H 'Content-Type: application/json' \
    -d '{"username":"fuzz","password":"fuzz-pw","auth":{"type":"m.login.dummy"}}' \
    "$BASE/_matrix/client/v3/register")
TOKEN=$(printf '%s' "$REGISTER" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') || {
    echo "run_schemathesis: registration failed: $REGISTER" >&2
    dump_server_log >&2
    exit 2
}

# --- seed data: a room with an event and a media file, so that the path
# parameters can be real IDs (schemathesis dictionaries, drawn with probability
# 1/2) and requests get past the "not found" checks into the handlers.
api() { # METHOD PATH [JSON|@FILE [CONTENT-TYPE]]
    local args=(-sS -X "$1" -H "Authorization: Bearer $TOKEN" "$BASE$2")
    if [ $# -ge 3 ]; then
        args+=(-H "Content-Type: ${4:-application/json}" --data-binary "$3")
    fi
    curl "${args[@]}"
}
json_field() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
USER_ID=$(printf '%s' "$REGISTER" | json_field user_id)
DEVICE_ID=$(printf '%s' "$REGISTER" | json_field device_id)
ROOM_ID=$(api POST /_matrix/client/v3/createRoom '{"name":"fuzz","preset":"public_chat","room_alias_name":"fuzz"}' | json_field room_id)
ENC_ROOM=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$ROOM_ID")
EVENT_ID=$(api PUT "/_matrix/client/v3/rooms/$ENC_ROOM/send/m.room.message/fuzz-txn-1" '{"msgtype":"m.text","body":"hello"}' | json_field event_id)
printf 'fuzz media\n' >"$WORK/media.txt"
MXC=$(api POST /_matrix/media/v3/upload "@$WORK/media.txt" text/plain | json_field content_uri)
SERVER_NAME=${USER_ID#*:}
MEDIA_ID=${MXC##*/}
echo "run_schemathesis: seed data: user $USER_ID device $DEVICE_ID room $ROOM_ID event $EVENT_ID media $MXC" >&2
CONFIG=$WORK/schemathesis.toml
cat >"$CONFIG" <<EOF_TOML
# no state carried over between runs (it would skip operations "restored from cache")
[cache]
enabled = false

[dictionaries.room]
values = ["$ROOM_ID"]
[dictionaries.room_or_alias]
values = ["$ROOM_ID", "#fuzz:$SERVER_NAME"]
[dictionaries.alias]
values = ["#fuzz:$SERVER_NAME"]
[dictionaries.event]
values = ["$EVENT_ID"]
[dictionaries.user]
values = ["$USER_ID"]
[dictionaries.device]
values = ["$DEVICE_ID"]
[dictionaries.server]
values = ["$SERVER_NAME"]
[dictionaries.media]
values = ["$MEDIA_ID"]

[parameters]
"path.roomId" = { dictionary = "room", probability = 0.5 }
"path.roomIdOrAlias" = { dictionary = "room_or_alias", probability = 0.5 }
"path.roomAlias" = { dictionary = "alias", probability = 0.5 }
"path.eventId" = { dictionary = "event", probability = 0.5 }
"path.userId" = { dictionary = "user", probability = 0.5 }
"path.deviceId" = { dictionary = "device", probability = 0.5 }
"path.serverName" = { dictionary = "server", probability = 0.5 }
"path.mediaId" = { dictionary = "media", probability = 0.5 }
"body.room_id" = { dictionary = "room", probability = 0.5 }
"body.user_id" = { dictionary = "user", probability = 0.5 }
"body.event_id" = { dictionary = "event", probability = 0.5 }
EOF_TOML

# --- fuzz -------------------------------------------------------------------
# Operations left out: they end the fuzz session (log out, deactivate, change
# the password, delete devices).
EXCLUDE=(
    --exclude-operation-id logout
    --exclude-operation-id logout_all
    --exclude-operation-id deactivateAccount
    --exclude-operation-id changePassword
    --exclude-operation-id deleteDevices
    --exclude-operation-id deleteDevice
)
echo "run_schemathesis: schemathesis $SCHEMATHESIS_VERSION against $BASE," \
    "max $MAX_EXAMPLES examples per operation, phases $PHASES, seed $SEED" >&2
START=$(date +%s)
set +e
(cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$BUNDLE" \
    --url "$BASE" \
    -H "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error \
    --max-examples "$MAX_EXAMPLES" \
    --phases "$PHASES" \
    --workers 1 \
    --request-timeout 10 \
    --seed "$SEED" \
    --generation-database none \
    --generation-with-security-parameters false \
    --suppress-health-check all \
    --warnings off \
    --no-color \
    --report har,json \
    --report-dir "$WORK/report" \
    --report-har-path "$WORK/report/requests.har" \
    --report-json-path "$WORK/report/run.json" \
    "${EXCLUDE[@]}")
ST_RC=$?
set -e
ELAPSED=$(( $(date +%s) - START ))

# --- summary ----------------------------------------------------------------
set +e
"$PY" - "$WORK/report/requests.har" "$WORK/report/run.json" "$BUNDLE" "$SERVER_LOG" \
    "$ST_RC" "$ELAPSED" "$MAX_PRINT" "${SANDCAT_FUZZ_STRICT:-0}" <<'EOF'
import collections, json, os, re, sys, urllib.parse

har_path, run_path, bundle_path, log_path, st_rc, elapsed, max_print, strict = sys.argv[1:]
st_rc, max_print = int(st_rc), int(max_print)

if not os.path.exists(har_path):
    print(f"run_schemathesis: schemathesis (exit {st_rc}) wrote no HAR report: the run did not happen")
    sys.exit(2)
entries = json.load(open(har_path))["log"]["entries"]
run = json.load(open(run_path)) if os.path.exists(run_path) else {}

# map concrete URLs back to the operation's path template
templates = []
for tmpl in json.load(open(bundle_path))["paths"]:
    rx = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(tmpl)) + "$"
    templates.append((tmpl.count("{"), tmpl, re.compile(rx)))
templates.sort()

def template_of(path):
    for _, tmpl, rx in templates:
        if rx.match(path):
            return tmpl
    return path

by_class = collections.Counter()
server_errors = collections.defaultdict(list)
for e in entries:
    status = e["response"]["status"]
    by_class[f"{status // 100}xx" if status else "no response"] += 1
    if status >= 500:
        req = e["request"]
        url = urllib.parse.urlsplit(req["url"])
        server_errors[(req["method"], template_of(urllib.parse.unquote(url.path)))].append(e)

ops = run.get("operations", {})
cases = run.get("test_cases", {})
print()
print("=================== sandcat schemathesis fuzz summary ===================")
print(f"time: {elapsed} s; schemathesis exit code {st_rc}")
print(f"operations: {ops.get('selected', '?')} selected of {ops.get('total', '?')}, "
      f"{ops.get('tested', '?')} tested, {ops.get('errored', '?')} errored, {ops.get('skipped', '?')} skipped")
print(f"test cases: {cases.get('generated', '?')} generated; requests sent: {len(entries)} "
      f"({', '.join(f'{k}: {v}' for k, v in sorted(by_class.items()))})")

errors = run.get("errors") or []
if errors:
    print(f"schemathesis errors (not 5xx; timeouts, unusable schemas, ...): {len(errors)}")
    for err in errors[:50]:
        print("  - " + json.dumps(err)[:500])

n5 = sum(len(v) for v in server_errors.values())
if not n5:
    print("5xx answers: none")
else:
    print(f"5xx answers: {n5} requests on {len(server_errors)} operations")
    for (method, tmpl), items in sorted(server_errors.items()):
        print()
        print(f"--- {method} {tmpl}: {len(items)} x 5xx")
        seen = set()
        shown = 0
        for e in items:
            req, resp = e["request"], e["response"]
            body = (req.get("postData") or {}).get("text", "")
            key = (req["url"], body)
            if key in seen:
                continue
            seen.add(key)
            if shown >= max_print:
                print(f"    ... more in {har_path}")
                break
            shown += 1
            ctype = next((h["value"] for h in req["headers"] if h["name"].lower() == "content-type"), "")
            print(f"  {req['method']} {req['url']}  [{e['startedDateTime']}]")
            if body:
                print(f"    body ({ctype}): {body[:1000]}")
            rtext = (resp.get("content") or {}).get("text", "")
            print(f"    -> {resp['status']} {resp.get('statusText', '')}: {rtext[:500]}")
print("==========================================================================")

if n5:
    sys.exit(1)
if st_rc not in (0, 1):
    print(f"run_schemathesis: schemathesis exited with {st_rc}")
    sys.exit(2)
if st_rc != 0 and strict == "1":
    sys.exit(1)
sys.exit(0)
EOF
RESULT=$?
set -e
if [ "$RESULT" != 0 ]; then
    dump_server_log
fi
exit "$RESULT"
