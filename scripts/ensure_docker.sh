#!/bin/bash
# Makes sure a Docker engine is installed and running on this machine:
# installs Debian's docker.io when dockerd is missing and starts dockerd
# (without iptables: this machine has no NAT) when nothing answers.
set -euo pipefail
log() { echo "[docker] $*" >&2; }

# docker-compose (v1, Debian's) validates docker-compose.yml in the tests.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  log "installing docker.io and docker-compose from Debian"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

log "starting dockerd"
mkdir -p /var/log
nohup dockerd --iptables=false --ip6tables=false >/var/log/dockerd-test.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "dockerd is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not start; see /var/log/dockerd-test.log"
tail -20 /var/log/dockerd-test.log >&2 || true
exit 1
