#!/bin/sh
# Complement names the homeserver through SERVER_NAME (e.g. hs1).
set -e
export SANDCAT_SERVER_NAME="${SERVER_NAME:-localhost}"
export SANDCAT_PUBLIC_BASE_URL="http://${SERVER_NAME:-localhost}:8008"
exec /usr/local/bin/sandcat serve
