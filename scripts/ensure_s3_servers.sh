#!/bin/bash
# Installs the S3 servers the storage tests run against when they are missing:
# moto's server comes with requirements-dev.txt (the virtualenv), s3rver from
# npm into the project-local .s3rver/ (git-ignored), Node from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[s3] $*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm from Debian"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
fi
if [ ! -x .s3rver/node_modules/.bin/s3rver ]; then
  log "installing s3rver 3 into .s3rver/"
  npm install --prefix .s3rver --no-audit --no-fund --silent s3rver@3 >/dev/null
fi
if [ ! -x .venv/bin/moto_server ]; then
  log "moto_server missing: installing requirements-dev.txt"
  .venv/bin/pip install -q -r requirements-dev.txt
fi
