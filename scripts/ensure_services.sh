#!/bin/bash
# Makes sure the PostgreSQL and Redis servers the tests use answer on
# 127.0.0.1. This machine kind starts both before a session; if one is down,
# start it with the same command the machine uses, installing it if missing.
set -euo pipefail
log() { echo "[services] $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 30); do port_open "$1" && return 0; sleep 1; done
  return 1
}

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port 5432 || { log "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
fi

if ! port_open 6379; then
  if ! command -v redis-server >/dev/null; then
    log "installing Redis from Debian"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
  fi
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || { log "Redis is not reachable on 127.0.0.1:6379"; exit 1; }
fi
