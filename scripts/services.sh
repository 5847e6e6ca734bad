#!/usr/bin/env bash
# Starts, on loopback, the pipeline services the tests talk to — reusing any that already run.
# Idempotent: run it as often as you like. Today the tests need:
#   Redis redis-server (Debian package) on 127.0.0.1:6379; SANDCAT_TEST_REDIS overrides.
#   S3    s3s-fs 0.14 (an S3 server over a folder, from crates.io) on 127.0.0.1:9000,
#         keys minioadmin/minioadmin. Production uses MinIO or any S3; the media store was
#         tested against s3s-fs here. Set SANDCAT_TEST_S3 to use another S3 server instead.
# State lives in $SANDCAT_SERVICES_DIR (default /var/cache/sandcat-services, or
# ~/.cache/sandcat-services when that is not writable).
set -euo pipefail

DIR="${SANDCAT_SERVICES_DIR:-/var/cache/sandcat-services}"
if ! mkdir -p "$DIR" 2>/dev/null || [ ! -w "$DIR" ]; then
    DIR="$HOME/.cache/sandcat-services"
    mkdir -p "$DIR"
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name
    for _ in $(seq 1 100); do
        if port_open "$1"; then return 0; fi
        sleep 0.1
    done
    echo "$2 did not start on 127.0.0.1:$1; see $DIR/$2.log" >&2
    exit 1
}

# --- Redis
if [ -n "${SANDCAT_TEST_REDIS:-}" ]; then
    echo "Redis: using $SANDCAT_TEST_REDIS"
elif port_open 6379; then
    echo "Redis: already listening on 127.0.0.1:6379"
else
    if ! command -v redis-server >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
        else
            echo "Redis is needed: sudo apt-get install redis-server (or set SANDCAT_TEST_REDIS)" >&2
            exit 1
        fi
    fi
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --logfile "$DIR/redis.log"
    wait_port 6379 redis
    echo "Redis: started on 127.0.0.1:6379"
fi

# --- S3 (s3s-fs)
if [ -n "${SANDCAT_TEST_S3:-}" ]; then
    echo "S3: using $SANDCAT_TEST_S3"
elif port_open 9000; then
    echo "S3: already listening on 127.0.0.1:9000"
else
    S3S="$DIR/cargo/bin/s3s-fs"
    if [ ! -x "$S3S" ]; then
        echo "S3: installing s3s-fs 0.14.1 from crates.io (a few minutes, once)"
        cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$DIR/cargo" >"$DIR/s3s-install.log" 2>&1 \
            || { cat "$DIR/s3s-install.log" >&2; exit 1; }
    fi
    mkdir -p "$DIR/s3"
    nohup "$S3S" --host 127.0.0.1 --port 9000 --access-key minioadmin --secret-key minioadmin "$DIR/s3" \
        >"$DIR/s3s-fs.log" 2>&1 &
    wait_port 9000 s3s-fs
    echo "S3: s3s-fs started on 127.0.0.1:9000 (data in $DIR/s3)"
fi
