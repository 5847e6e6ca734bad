"""Checks docker-compose.yml without a Docker engine: it parses, every service the pipeline
needs is there, each sandcat instance is configured for the pipeline backends, and the files
it refers to exist. Where `docker compose` is installed, its own `config` check runs too."""

import pathlib
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
errors = []


def need(cond, msg):
    if not cond:
        errors.append(msg)


services = compose.get("services", {})
for name in ["postgres", "kafka", "mongo", "redis", "minio", "sandcat-1", "sandcat-2", "gateway"]:
    need(name in services, f"service {name} is missing")
need("KAFKA_PROCESS_ROLES" in services.get("kafka", {}).get("environment", {}), "kafka is not in KRaft mode")
for name in ["sandcat-1", "sandcat-2"]:
    svc = services.get(name, {})
    env = svc.get("environment", {})
    need(svc.get("build") == ".", f"{name} is not built from the Dockerfile")
    for key, value in [
        ("SANDCAT_STORAGE_BACKEND", "postgres"),
        ("SANDCAT_BUS_BACKEND", "kafka"),
        ("SANDCAT_CACHE_BACKEND", "redis"),
        ("SANDCAT_MEDIA_BACKEND", "s3"),
        ("SANDCAT_INBOX_BACKEND", "mongodb"),
    ]:
        need(env.get(key) == value, f"{name}: {key} should be {value}")
    for key in ["SANDCAT_STORAGE_URL", "SANDCAT_BUS_BROKERS", "SANDCAT_CACHE_URL", "SANDCAT_MEDIA_S3_ENDPOINT", "SANDCAT_INBOX_URL"]:
        host = str(env.get(key, "")).split("//")[-1].split("@")[-1].split(":")[0]
        need(host in services, f"{name}: {key} points at {host!r}, which is not a service")
ports = services.get("gateway", {}).get("ports", [])
need(any(str(p).endswith(":8008") for p in ports), "the gateway does not publish port 8008")
for vol in services.get("gateway", {}).get("volumes", []):
    src = vol.split(":")[0]
    need((ROOT / src).exists(), f"gateway mounts {src}, which does not exist")
need((ROOT / "Dockerfile").exists(), "Dockerfile is missing")
nginx = (ROOT / "deploy/nginx.conf").read_text()
need("sandcat-1:8008" in nginx and "sandcat-2:8008" in nginx, "nginx does not balance both instances")

if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
    r = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True)
    need(r.returncode == 0, f"docker compose config: {r.stderr.strip()}")

if errors:
    print("docker-compose.yml:", *errors, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"docker-compose.yml: {len(services)} services, pipeline configuration consistent")
