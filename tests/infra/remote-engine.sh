#!/usr/bin/env bash
# Test-only infrastructure: a second, remote-looking Docker engine reached over TCP with TLS.
#
# Why it exists: in GitLab CI the validator talks to a `docker:dind` service, an engine on
# another host reached as DOCKER_HOST=tcp://docker:2376 with DOCKER_TLS_VERIFY=1 and client
# certificates in DOCKER_CERT_PATH. Published ports then live on *that* host, not on
# 127.0.0.1. The integration tests need the same shape without a registry (we cannot pull
# docker:dind) and without a second machine, so this script builds it from parts of this one:
#   - a network namespace joined to the host by a veth pair (host 10.231.X.1, engine 10.231.X.2),
#     with no route out: the engine sees the host and nothing else;
#   - a throwaway CA, a server certificate for IP 10.231.X.2 and a client certificate;
#   - a second dockerd inside the namespace, with its own data root, exec root, containerd,
#     trust key (engine ID), hostname (engine name) and cgroup parent, listening only on
#     tcp://10.231.X.2:2376 with --tlsverify;
#   - the base image copied in from the host's engine (docker save | docker load).
# Everything is derived from DIR, so two engines (two DIRs) can coexist. Real users point
# DOCKER_HOST at their own engine and never run this.
#
# Usage: tests/infra/remote-engine.sh start DIR [IMAGE]   (IMAGE defaults to python:3.11.7-slim)
#        tests/infra/remote-engine.sh stop DIR            (idempotent; also after a failed start)
# `start` prints DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH lines and writes them to DIR/env.
# Needs root (network namespaces, mounts), ip (iproute2), openssl, unshare, dockerd and docker.
set -euo pipefail

self=$(realpath -- "${BASH_SOURCE[0]}")
port=2376
start_timeout=60
default_image=python:3.11.7-slim

log() { echo "[remote-engine] $*" >&2; }
die() { log "$*"; exit 1; }
usage() { die "usage: remote-engine.sh start DIR [IMAGE] | stop DIR"; }

# Names and addresses come from a hash of DIR's absolute path: `stop` finds them again even
# when DIR is gone, and two DIRs get two namespaces. X (1..250) can collide; `start` refuses then.
derive() {
  dir=$(realpath -m -- "$1")
  case "$dir" in / | "") die "refusing to use '$1' as DIR" ;; esac
  hash=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
  octet=$((16#$hash % 250 + 1))
  ns="mvengine-$hash"
  veth_host="mvh-$hash" # interface names are limited to 15 characters
  veth_ns="mvn-$hash"
  host_ip="10.231.$octet.1"
  engine_ip="10.231.$octet.2"
  bridge_ip="10.232.$octet.1/24" # the host's docker0 is 172.17.0.1/16; keep clear of it
  cgroup_parent="mvengine-$hash"
}

remote_docker() {
  docker -H "tcp://$engine_ip:$port" --tlsverify --tlscacert "$dir/client/ca.pem" \
    --tlscert "$dir/client/cert.pem" --tlskey "$dir/client/key.pem" "$@"
}

netns_exists() { [ -e "/run/netns/$ns" ]; }

mounts_under_dir() { awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts; }

# A process that exited but was not reaped yet still has a /proc entry; it counts as gone.
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

wait_gone() { # SECONDS PID...
  local deadline=$((SECONDS + $1)) pid
  shift
  while [ "$SECONDS" -lt "$deadline" ]; do
    local left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    [ "$left" -eq 0 ] && return 0
    sleep 0.2
  done
  return 1
}

# Best effort: the engine's processes are orphans, reaped by PID 1 in its own time (seconds on
# some init systems); give it a moment so `pgrep dockerd` right after `stop` shows no zombie.
wait_reaped() { # SECONDS PID...
  local deadline=$((SECONDS + $1)) pid
  shift
  for pid in "$@"; do
    while [ -e "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  done
}

make_network() {
  ip netns add "$ns"
  ip link add "$veth_host" type veth peer name "$veth_ns"
  ip link set "$veth_ns" netns "$ns"
  ip addr add "$host_ip/30" dev "$veth_host"
  ip link set "$veth_host" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$engine_ip/30" dev "$veth_ns"
  ip -n "$ns" link set "$veth_ns" up
  # No default route and no NAT: the engine and its containers reach the host's veth address only.
}

make_certs() {
  local s="$dir/server" c="$dir/client" conf="$dir/server/openssl.cnf"
  cat >"$conf" <<CNF
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:$engine_ip
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
CNF
  (
    umask 077
    openssl genrsa -out "$s/ca-key.pem" 2048
    openssl req -x509 -new -config "$conf" -extensions ca -key "$s/ca-key.pem" -sha256 -days 7 \
      -subj "/CN=mlflow-validator test CA $hash" -out "$s/ca.pem"
    local who
    for who in server client; do
      local out="$s" cn="$engine_ip"
      [ "$who" = client ] && out="$c" cn=client
      openssl genrsa -out "$out/key.pem" 2048
      openssl req -new -config "$conf" -key "$out/key.pem" -subj "/CN=$cn" -out "$out/$who.csr"
      openssl x509 -req -in "$out/$who.csr" -CA "$s/ca.pem" -CAkey "$s/ca-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
        -sha256 -days 7 -extfile "$conf" -extensions "$who" -out "$out/cert.pem"
      rm -f "$out/$who.csr"
    done
    cp "$s/ca.pem" "$c/ca.pem"
  ) 2>"$dir/openssl.log" || die "openssl failed: $(cat "$dir/openssl.log")"
}

# Runs as `ip netns exec NS unshare --uts bash remote-engine.sh _engine DIR`, then becomes dockerd.
# `ip netns exec` gave us a private mount namespace (a slave of the host's, so nothing we mount
# shows on the host and everything goes away with the last process) and a fresh /sys for the
# namespace's interfaces, which lacks the cgroup mounts; dockerd needs them, so replay the host's.
engine() {
  hostname "$ns"
  local src target fstype opts rest
  while read -r src target fstype opts rest; do
    mkdir -p "$target"
    mount -t "$fstype" -o "$opts" "$src" "$target"
  done <"$dir/cgroup-mounts"
  # Private /run/containerd and /run/docker: dockerd would adopt a system containerd whose socket
  # it finds in /run/containerd (it must start its own, in this mount namespace), and shims and
  # libnetwork leave sockets there that must not mix with the host engine's.
  mkdir -p /run/containerd /run/docker
  mount -t tmpfs -o mode=0711 tmpfs /run/containerd
  mount -t tmpfs -o mode=0711 tmpfs /run/docker
  exec env -u DOCKER_HOST -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH dockerd \
    --config-file "$dir/daemon.json" \
    --data-root "$dir/data" \
    --exec-root "$dir/exec" \
    --pidfile "$dir/dockerd.pid" \
    -H "tcp://$engine_ip:$port" \
    --tlsverify \
    --tlscacert "$dir/server/ca.pem" \
    --tlscert "$dir/server/cert.pem" \
    --tlskey "$dir/server/key.pem" \
    --bip "$bridge_ip" \
    --cgroup-parent "/$cgroup_parent" \
    --shutdown-timeout 5
}

start() {
  local image=${1:-$default_image}
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, mounts)"
  local tool
  for tool in ip openssl unshare dockerd docker sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found"
  done
  netns_exists && die "network namespace $ns exists: an engine for $dir is running; stop it first"
  local addrs
  addrs=$(ip -o addr show)
  if grep -q " 10\.231\.$octet\." <<<"$addrs"; then
    die "10.231.$octet.0/30 is in use (another engine's DIR hashes to the same X); use another DIR"
  fi
  export NO_PROXY="${NO_PROXY:+$NO_PROXY,}$engine_ip" no_proxy="${no_proxy:+$no_proxy,}$engine_ip"
  local began=$SECONDS

  mkdir -p "$dir"
  chmod 700 "$dir"
  mkdir -p "$dir/client" "$dir/server" "$dir/data" "$dir/exec"
  make_network
  make_certs
  # Not /etc/docker/daemon.json, which configures the host's engine. dockerd 20.10 derives the engine
  # ID from /etc/docker/key.json unless told otherwise (no command-line flag, only this key).
  printf '{"deprecated-key-path": "%s"}\n' "$dir/key.json" >"$dir/daemon.json"
  awk '$2 ~ "^/sys/fs/cgroup(/|$)"' /proc/self/mounts >"$dir/cgroup-mounts"

  log "starting dockerd in $ns on tcp://$engine_ip:$port (log: $dir/dockerd.log)"
  setsid -w ip netns exec "$ns" unshare --uts bash "$self" _engine "$dir" </dev/null >"$dir/dockerd.log" 2>&1 &
  local launcher=$!
  local deadline=$((SECONDS + start_timeout))
  until remote_docker info >/dev/null 2>&1; do
    if ! alive "$launcher"; then
      die "dockerd exited; last lines of $dir/dockerd.log:"$'\n'"$(tail -n 30 "$dir/dockerd.log")"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "dockerd did not answer within ${start_timeout} s; last lines of $dir/dockerd.log:"$'\n'"$(tail -n 30 "$dir/dockerd.log")"
    fi
    sleep 0.5
  done

  log "copying $image from the local engine"
  docker save "$image" | remote_docker load >/dev/null

  printf 'DOCKER_HOST=tcp://%s:%s\nDOCKER_TLS_VERIFY=1\nDOCKER_CERT_PATH=%s\n' "$engine_ip" "$port" "$dir/client" >"$dir/env"
  cat "$dir/env"
  log "ready in $((SECONDS - began)) s"
}

# Processes of this engine: its containers (own network namespaces, found through the cgroup
# parent) and everything in its network namespace (dockerd, containerd, shims, docker-proxy).
leftover_pids() {
  local pids
  pids=$(cat /sys/fs/cgroup/"$cgroup_parent"/{,*/}cgroup.procs /sys/fs/cgroup/*/"$cgroup_parent"/{,*/}cgroup.procs \
    2>/dev/null || true)
  if netns_exists; then pids+=" $(ip netns pids "$ns" || true)"; fi
  # shellcheck disable=SC2086
  echo $pids | tr ' ' '\n' | sort -un | tr '\n' ' ' | sed 's/ *$//'
}

stop() {
  [ "$(id -u)" -eq 0 ] || die "needs root"
  local pids="" pid cg signalled=""

  # dockerd stops its containers (--shutdown-timeout 5) and then its containerd on SIGTERM.
  if netns_exists; then
    for pid in $(ip netns pids "$ns" || true); do
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && kill -TERM "$pid" 2>/dev/null; then
        pids+=" $pid"
      fi
    done
    # shellcheck disable=SC2086
    if [ -n "$pids" ] && ! wait_gone 30 $pids; then log "dockerd ignored SIGTERM for 30 s; killing"; fi
    signalled=$pids
  fi

  # Whatever is left, container processes included, gets SIGKILL.
  local round
  for round in 1 2 3 4 5; do
    pids=$(leftover_pids)
  # shellcheck disable=SC2086
  wait_reaped 10 $signalled
    if [ -z "$pids" ]; then break; fi
    [ "$round" -gt 1 ] || log "killing leftover processes: $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    signalled+=" $pids"
    # shellcheck disable=SC2086
    wait_gone 10 $pids || true
  done
  pids=$(leftover_pids)
  # shellcheck disable=SC2086
  wait_reaped 10 $signalled

  # Mounts: the engine's own live in its private mount namespace and died with it; anything
  # under DIR in ours (a start run without `ip netns exec`, a debugging session) goes now.
  local mnt
  while read -r mnt; do
    mnt=$(printf '%b' "$mnt") # /proc/mounts escapes spaces as \040
    umount -R "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "cannot unmount $mnt"
  done < <(mounts_under_dir | sort -r)

  if netns_exists; then ip netns delete "$ns" || log "cannot delete network namespace $ns"; fi
  if ip link show "$veth_host" >/dev/null 2>&1; then ip link delete "$veth_host" || log "cannot delete $veth_host"; fi

  for cg in /sys/fs/cgroup/"$cgroup_parent" /sys/fs/cgroup/*/"$cgroup_parent"; do
    if [ -d "$cg" ]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done

  rm -rf -- "$dir"

  local left=()
  if netns_exists; then left+=("network namespace $ns"); fi
  if ip link show "$veth_host" >/dev/null 2>&1; then left+=("interface $veth_host"); fi
  if [ -e "$dir" ]; then left+=("$dir"); fi
  if [ -n "$(mounts_under_dir)" ]; then left+=("mounts under $dir"); fi
  if [ -n "$pids" ]; then left+=("processes $pids"); fi
  for cg in /sys/fs/cgroup/"$cgroup_parent" /sys/fs/cgroup/*/"$cgroup_parent"; do
    if [ -d "$cg" ]; then left+=("cgroup $cg"); fi
  done
  [ "${#left[@]}" -eq 0 ] || die "left behind: ${left[*]}"
  return 0
}

[ $# -ge 2 ] || usage
command=$1
derive "$2"
case "$command" in
  start) [ $# -le 3 ] || usage; start "${3:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop ;;
  _engine) engine ;;
  *) usage ;;
esac
