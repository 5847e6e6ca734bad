#!/usr/bin/env python3
"""How many operations of the spec's Client-Server API a running server answers.

Usage: spec_coverage.py BASE_URL SPEC_DIR   (SPEC_DIR: the spec's client-server OpenAPI files)

Registers a user, then sends each non-deprecated operation once (path parameters filled
with placeholders, an empty JSON body where one is taken). An operation counts as answered
unless the server says it does not know it (404 or 405 with `M_UNRECOGNIZED`); what it
answers is not judged here (the end-to-end tests do that). Lists the ones not answered.
"""

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request


def call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, method=method.upper(), data=data)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    base, spec_dir = sys.argv[1], sys.argv[2]
    bundler = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "bundle_spec.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "spec.json")
        subprocess.run([sys.executable, bundler, spec_dir, out], check=True, capture_output=True)
        spec = json.load(open(out, encoding="utf-8"))
    name = "coverage" + secrets.token_hex(4)
    _, body = call(base, "post", "/_matrix/client/v3/register",
                   {"username": name, "password": "pw-" + name, "auth": {"type": "m.login.dummy"}})
    token = json.loads(body)["access_token"]
    total, missing = 0, []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "put", "post", "delete") or op.get("deprecated"):
                continue
            total += 1
            status, body = call(base, method, re.sub(r"\{[^}]+\}", "x", path),
                                {} if method in ("put", "post") else None, token)
            try:
                unknown = json.loads(body).get("errcode") == "M_UNRECOGNIZED"
            except (ValueError, AttributeError):
                unknown = status == 404 and not body
            if status in (404, 405) and unknown:
                missing.append(f"{method.upper()} {path}")
    print(f"{total - len(missing)} of {total} non-deprecated operations answer")
    for m in missing:
        print("  not answered:", m)


if __name__ == "__main__":
    main()
