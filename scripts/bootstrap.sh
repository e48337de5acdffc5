#!/bin/bash
# Creates .venv with Python 3.11 and installs the pinned dependencies.
# Re-installs only when a requirements file changed (stamp of their hash).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[bootstrap] $*" >&2; }

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { log "Python 3.11 is required"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv
fi
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
have="$(cat .venv/.requirements.sha256 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  log "installing Python dependencies"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > .venv/.requirements.sha256
fi
