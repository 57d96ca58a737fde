#!/usr/bin/env bash
# Test-only bootstrap: gives this machine a Docker engine and the base image that
# MLflow's generated Dockerfile starts FROM (python:<version>-slim).
#
# Why it exists: the machines this project is developed and tested on reach PyPI and
# Debian's mirror but no image registry, so `docker pull python:3.11.7-slim` fails.
# We debootstrap Debian, import it, and install Debian's python3 on top, tagged with
# the name MLflow asks for. Real users pull their base image from a registry and
# never run this.
#
# Usage: tests/infra/docker-bootstrap.sh PYTHON_VERSION   (e.g. 3.11.7)
set -euo pipefail

python_version=${1:?usage: docker-bootstrap.sh PYTHON_VERSION}
base_tag="python:${python_version}-slim"
debian_tag="local/debian:bookworm"

log() { echo "[docker-bootstrap] $*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
  if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then return; fi
  log "installing docker.io and debootstrap from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq docker.io debootstrap >/dev/null
}

ensure_engine() {
  if docker info >/dev/null 2>&1; then return; fi
  log "starting dockerd"
  as_root setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  log "dockerd did not answer within 60 s; see /tmp/dockerd.log"
  exit 1
}

ensure_debian_image() {
  if docker image inspect "$debian_tag" >/dev/null 2>&1; then return; fi
  log "debootstrapping Debian bookworm (about 30 s)"
  rootfs=$(mktemp -d)
  trap 'as_root rm -rf "$rootfs"' RETURN
  as_root debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  as_root tar -C "$rootfs" -c . | docker import - "$debian_tag" >/dev/null
}

ensure_python_image() {
  if docker image inspect "$base_tag" >/dev/null 2>&1; then return; fi
  log "building $base_tag from $debian_tag (Debian's python3 stands in for the official image)"
  docker build --rm --force-rm -q -t "$base_tag" - >/dev/null <<DOCKERFILE
FROM $debian_tag
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv python-is-python3 ca-certificates \
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
    && rm -rf /var/lib/apt/lists/*
DOCKERFILE
}

ensure_packages
ensure_engine
ensure_debian_image
ensure_python_image
log "ready: $base_tag"
