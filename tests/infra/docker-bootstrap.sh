#!/usr/bin/env bash
# Test-only bootstrap: gives this machine a Docker engine, the base images that MLflow's
# generated Dockerfile starts FROM (python:<version>-slim) for each Python the tests log
# models with, and python:3.11-slim-trixie, which the validator's own image starts FROM.
#
# Why it exists: the machines this project is developed and tested on reach PyPI and
# Debian's mirror but no image registry, so `docker pull python:3.11.7-slim` fails.
# We debootstrap Debian, import it, and install a Python on top, tagged with the name
# the Dockerfile asks for, on the Debian release the upstream image of that name has:
#   python:3.11.7-slim (a frozen tag): Debian 12, whose python3 is 3.11;
#   python:3.13.0-slim: Debian 13, whose python3 is 3.13;
#   python:3.11-slim-trixie (the validator's image's base): Debian 13, with this machine's CPython
#   3.11 in /usr/local as the upstream image has its own (Debian 13 packages no 3.11).
# Real users pull their base images from a registry and never run this.
#
# Usage: tests/infra/docker-bootstrap.sh PYTHON_VERSION...   (e.g. 3.11.7 3.13.0)
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: docker-bootstrap.sh PYTHON_VERSION..." >&2; exit 2; }
validator_base="python:3.11-slim-trixie"

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

ensure_debian_image() {  # RELEASE
  local release=$1 rootfs
  if docker image inspect "local/debian:$release" >/dev/null 2>&1; then return; fi
  log "debootstrapping Debian $release (about 30 s)"
  rootfs=$(mktemp -d)
  trap 'as_root rm -rf "$rootfs"' RETURN
  as_root debootstrap --variant=minbase "$release" "$rootfs" http://deb.debian.org/debian >/dev/null
  as_root tar -C "$rootfs" -c . | docker import - "local/debian:$release" >/dev/null
}

debian_release_of() {  # PYTHON_VERSION: the release whose python3 has that minor version
  case "$1" in
    3.11.*) echo bookworm ;;
    3.13.*) echo trixie ;;
    *) log "no Debian release packages Python $1; log test models with 3.11 or 3.13"; exit 2 ;;
  esac
}

ensure_python_image() {  # PYTHON_VERSION
  local tag="python:$1-slim" release
  if docker image inspect "$tag" >/dev/null 2>&1; then return; fi
  release=$(debian_release_of "$1")
  ensure_debian_image "$release"
  log "building $tag from Debian $release (Debian's python3 stands in for the official image)"
  docker build --rm --force-rm -q -t "$tag" - >/dev/null <<DOCKERFILE
FROM local/debian:$release
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv python-is-python3 ca-certificates \
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
    && rm -rf /var/lib/apt/lists/*
DOCKERFILE
}

ensure_validator_base() {
  if docker image inspect "$validator_base" >/dev/null 2>&1; then return; fi
  ensure_debian_image trixie
  local prefix context
  prefix=$(python3.11 -c 'import sys; print(sys.base_prefix)')
  context=$(mktemp -d)
  trap 'rm -rf "$context"' RETURN
  log "building $validator_base from Debian trixie and the CPython 3.11 in $prefix"
  tar -C "$prefix" -cf "$context/python.tar" bin/python3.11 lib/libpython3.11.so.1.0 \
    --exclude=site-packages --exclude=test --exclude=idlelib --exclude=tkinter --exclude=__pycache__ lib/python3.11
  # The upstream image's runtime libraries; its python3.11 finds its libpython through ld.so's cache.
  cat > "$context/Dockerfile" <<DOCKERFILE
FROM local/debian:trixie
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates netbase tzdata \
        libbz2-1.0 libffi8 liblzma5 libncursesw6 libreadline8t64 libsqlite3-0 libssl3t64 libuuid1 zlib1g \
    && rm -rf /var/lib/apt/lists/*
ADD python.tar /usr/local/
RUN ldconfig && mkdir /usr/local/lib/python3.11/site-packages \
    && ln -s python3.11 /usr/local/bin/python3 && ln -s python3 /usr/local/bin/python \
    && python3 -m ensurepip --default-pip >/dev/null && python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2'
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
  docker build --rm --force-rm -q -t "$validator_base" "$context" >/dev/null
}

ensure_packages
ensure_engine
for version in "$@"; do ensure_python_image "$version"; done
ensure_validator_base
log "ready: $(printf 'python:%s-slim ' "$@")$validator_base"
