#!/usr/bin/env python3
"""Bundle the split Matrix client-server OpenAPI 3.1 files into one JSON document.

Usage: bundle_spec.py SPEC_DIR OUTPUT.json

* reads every top-level ``SPEC_DIR/*.yaml`` that has ``paths``;
* resolves every ``$ref`` (relative file refs, JSON pointers, and both
  combined); refs that cannot be resolved (files missing from the copy, e.g.
  ``event-schemas/...``) and recursive refs are loosened to ``{}``;
* prefixes each file's paths with that file's own server base path (from
  ``servers[0].url`` with the ``{protocol}://{hostname}`` part stripped and the
  remaining ``{variables}`` replaced by their defaults), so that the merged
  document holds full paths such as ``/_matrix/client/v3/login``;
* keeps the security schemes, and writes JSON.

Schema loosening done so that schemathesis can generate data (see
``loosen_schema``): custom ``mx-*`` string formats are dropped (the ``pattern``
next to them stays).

Only PyYAML and the standard library are used.
"""

import copy
import glob
import json
import os
import re
import sys
import urllib.parse

import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Resolution deeper than this is cut off to {} (guards against pathological
# but non-recursive chains; true recursion is caught by the ref stack).
MAX_REF_DEPTH = 40


class Bundler:
    def __init__(self):
        self.docs = {}  # abs path -> parsed YAML (or None when missing/invalid)
        self.unresolved = {}  # ref description -> count
        self.recursive = {}  # ref description -> count
        self.loosened_formats = {}  # format -> count

    # ---- loading -------------------------------------------------------
    def load(self, path):
        path = os.path.abspath(path)
        if path not in self.docs:
            try:
                with open(path, encoding="utf-8") as f:
                    self.docs[path] = yaml.safe_load(f)
            except (OSError, yaml.YAMLError):
                self.docs[path] = None
        return self.docs[path]

    @staticmethod
    def pointer(doc, ptr):
        """Follow a JSON pointer ('' or '/a/b'); raise KeyError when absent."""
        node = doc
        if ptr in ("", "/"):
            return node
        if not ptr.startswith("/"):
            raise KeyError(ptr)
        for raw in ptr[1:].split("/"):
            part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(ptr)
        return node

    # ---- resolution ----------------------------------------------------
    def resolve(self, node, cur_file, stack=()):
        if isinstance(node, list):
            return [self.resolve(v, cur_file, stack) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and isinstance(node["$ref"], str):
            resolved = self.resolve_ref(node["$ref"], cur_file, stack)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings:
                siblings = self.resolve(siblings, cur_file, stack)
                if isinstance(resolved, dict):
                    merged = dict(resolved)
                    merged.update(siblings)
                    return merged
                return siblings
            return resolved
        return {k: self.resolve(v, cur_file, stack) for k, v in node.items()}

    def resolve_ref(self, ref, cur_file, stack):
        file_part, _, ptr = ref.partition("#")
        if file_part:
            target = os.path.normpath(os.path.join(os.path.dirname(cur_file), file_part))
        else:
            target = cur_file
        key = (target, ptr)
        if key in stack or len(stack) >= MAX_REF_DEPTH:
            self.recursive[ref] = self.recursive.get(ref, 0) + 1
            return {}
        doc = self.load(target)
        if doc is None:
            self.unresolved[ref] = self.unresolved.get(ref, 0) + 1
            return {}
        try:
            sub = self.pointer(doc, ptr)
        except KeyError:
            self.unresolved[ref] = self.unresolved.get(ref, 0) + 1
            return {}
        return self.resolve(copy.deepcopy(sub), target, stack + (key,))

    # ---- loosening -----------------------------------------------------
    def loosen_schema(self, node):
        """Drop things schemathesis/hypothesis-jsonschema cannot generate for."""
        if isinstance(node, list):
            return [self.loosen_schema(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == "format" and isinstance(v, str) and v.startswith("mx-"):
                self.loosened_formats[v] = self.loosened_formats.get(v, 0) + 1
                continue
            out[k] = self.loosen_schema(v)
        return out


def merge_operation(op, other):
    """Fold a second definition of the same method+path into the first one:
    the union of the parameters (the extra ones optional) and request bodies
    as ``anyOf`` per media type."""
    have = {(p.get("in"), p.get("name")) for p in op.get("parameters", [])}
    for p in other.get("parameters", []):
        if (p.get("in"), p.get("name")) not in have:
            p = dict(p)
            if p.get("in") != "path":
                p["required"] = False
            op.setdefault("parameters", []).append(p)
    body = (other.get("requestBody") or {}).get("content") or {}
    if body and "requestBody" in op:
        content = op["requestBody"].setdefault("content", {})
        for media, spec in body.items():
            if media in content and "schema" in content[media] and "schema" in spec:
                content[media] = {
                    "schema": {"anyOf": [content[media]["schema"], spec["schema"]]}
                }
            else:
                content.setdefault(media, spec)
    elif body:
        op["requestBody"] = other["requestBody"]
    for code, resp in (other.get("responses") or {}).items():
        op.setdefault("responses", {}).setdefault(code, resp)


def base_path(doc):
    servers = doc.get("servers") or []
    if not servers or not isinstance(servers[0], dict):
        return ""
    server = servers[0]
    url = str(server.get("url", ""))
    # strip a "{protocol}://{hostname}" (or literal scheme://host) prefix
    # (the host is one "{variable}" or literal host[:port] text)
    url = re.sub(r"^[^:/{}]*(?:\{[^}]*\})?[^:/{}]*://(?:\{[^}]*\}|[^/{}]+)", "", url)
    variables = server.get("variables") or {}

    def subst(m):
        var = variables.get(m.group(1)) or {}
        return str(var.get("default", ""))

    url = re.sub(r"\{([^}]*)\}", subst, url)
    return url.rstrip("/")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    spec_dir, out_path = argv[1], argv[2]
    files = sorted(glob.glob(os.path.join(spec_dir, "*.yaml")))
    if not files:
        print(f"bundle_spec: no *.yaml files in {spec_dir}", file=sys.stderr)
        return 1

    b = Bundler()
    paths = {}
    security_schemes = {}
    op_ids = {}
    duplicates = []
    for path in files:
        path = os.path.abspath(path)
        doc = b.load(path)
        if not isinstance(doc, dict) or not doc.get("paths"):
            continue
        prefix = base_path(doc)
        comps = (doc.get("components") or {}).get("securitySchemes") or {}
        for name, scheme in comps.items():
            security_schemes.setdefault(name, b.resolve(scheme, path))
        for raw_path, item in doc["paths"].items():
            item = b.loosen_schema(b.resolve(item, path))
            # the spec writes a second operation on the same path with a
            # trailing space ("/events ", "/rooms/{roomId}/invite ")
            full = prefix + raw_path.strip()
            merged = paths.setdefault(full, {})
            for key, value in item.items():
                if key in HTTP_METHODS:
                    if key in merged:
                        merge_operation(merged[key], value)
                        duplicates.append(f"{key.upper()} {full} ({os.path.basename(path)})")
                        continue
                    op_id = value.get("operationId")
                    if op_id:
                        if op_id in op_ids:
                            n = 2
                            while f"{op_id}_{n}" in op_ids:
                                n += 1
                            value["operationId"] = op_id = f"{op_id}_{n}"
                        op_ids[op_id] = full
                    merged[key] = value
                elif key == "parameters":
                    have = {(p.get("in"), p.get("name")) for p in merged.get("parameters", [])}
                    merged.setdefault("parameters", []).extend(
                        p for p in value if (p.get("in"), p.get("name")) not in have
                    )
                else:
                    merged.setdefault(key, value)

    bundle = {
        "openapi": "3.1.0",
        "info": {
            "title": "Matrix Client-Server API (bundled for fuzzing)",
            "version": "1.0.0",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": security_schemes},
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(bundle, f, indent=1, sort_keys=False, default=str)

    n_ops = sum(1 for item in paths.values() for k in item if k in HTTP_METHODS)
    print(f"bundle_spec: {len(paths)} paths, {n_ops} operations -> {out_path}", file=sys.stderr)
    if b.unresolved:
        print(f"bundle_spec: loosened {sum(b.unresolved.values())} unresolvable refs to {{}}:", file=sys.stderr)
        for ref in sorted(b.unresolved):
            print(f"  {ref} (x{b.unresolved[ref]})", file=sys.stderr)
    if b.recursive:
        print(f"bundle_spec: loosened {sum(b.recursive.values())} recursive refs to {{}}:", file=sys.stderr)
        for ref in sorted(b.recursive):
            print(f"  {ref} (x{b.recursive[ref]})", file=sys.stderr)
    if b.loosened_formats:
        fmts = ", ".join(f"{k} (x{v})" for k, v in sorted(b.loosened_formats.items()))
        print(f"bundle_spec: dropped custom formats: {fmts}", file=sys.stderr)
    for d in duplicates:
        print(f"bundle_spec: duplicate operation merged into the first: {d}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
