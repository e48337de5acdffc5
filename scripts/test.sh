#!/bin/bash
# The one test command (make test): prepares everything a fresh machine lacks
# (virtualenv, Docker engine, local test images, PostgreSQL and Redis), lints,
# then runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/ensure_tools.sh
scripts/ensure_docker.sh
scripts/testimages/build.sh
scripts/ensure_services.sh
scripts/ensure_s3_servers.sh

echo "[test] ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "[test] pytest" >&2
exec .venv/bin/pytest "$@"
