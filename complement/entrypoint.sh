#!/bin/sh
# Complement names the homeserver through SERVER_NAME (e.g. hs1) and mounts a CA at
# /complement/ca (ca.crt, ca.key) that every server of a test trusts: the federation
# listener (8448) gets a certificate for SERVER_NAME signed by it, made here at start.
# Application service registrations it mounts at /complement/appservice are loaded.
set -e
NAME="${SERVER_NAME:-localhost}"
CA="${COMPLEMENT_CA_DIR:-/complement/ca}"
APPSERVICES="${COMPLEMENT_APPSERVICE_DIR:-/complement/appservice}"
export SANDCAT_SERVER_NAME="$NAME"
export SANDCAT_PUBLIC_BASE_URL="http://$NAME:8008"
if [ -d "$APPSERVICES" ]; then
    export SANDCAT_APPSERVICE_DIR="$APPSERVICES"
fi
if [ -f "$CA/ca.crt" ] && [ -f "$CA/ca.key" ]; then
    TLS="${SANDCAT_DATA_DIR:-/data}/complement-tls"
    mkdir -p "$TLS"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$TLS/server.key" -subj "/CN=$NAME" -out "$TLS/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\n' "$NAME" > "$TLS/san.cnf"
    # The serial file goes beside the certificate: the CA's directory may be read-only.
    openssl x509 -req -sha256 -days 2 -in "$TLS/server.csr" \
        -CA "$CA/ca.crt" -CAkey "$CA/ca.key" -CAserial "$TLS/ca.srl" -CAcreateserial \
        -extfile "$TLS/san.cnf" -out "$TLS/server.crt" 2>/dev/null
    export SANDCAT_FEDERATION_LISTEN="${SANDCAT_FEDERATION_LISTEN:-0.0.0.0:8448}"
    export SANDCAT_FEDERATION_TLS_CERTIFICATE="$TLS/server.crt"
    export SANDCAT_FEDERATION_TLS_PRIVATE_KEY="$TLS/server.key"
    # Complement's own servers present certificates of that CA, on private addresses.
    export SANDCAT_FEDERATION_VERIFY_CERTIFICATES=false
    export SANDCAT_FEDERATION_ALLOW_PRIVATE_DESTINATIONS=true
fi
exec "${SANDCAT_BIN:-/usr/local/bin/sandcat}" serve
