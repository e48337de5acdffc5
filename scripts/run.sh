#!/bin/bash
# The run command (make run): installs what is needed and starts the service
# on embedded defaults: SQLite and backups under ./var, a filesystem Celery
# broker, so the API, one worker and beat run here with no external service.
# Environment variables (see .env.example) switch to PostgreSQL/Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[run] $*" >&2; }

scripts/bootstrap.sh
PY=.venv/bin/python
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
HOST_ID="$($PY -c 'import django,os;os.environ.setdefault("DJANGO_SETTINGS_MODULE","backup_project.settings");django.setup();from django.conf import settings;print(settings.BACKUP_HOST_ID)')"

$PY manage.py migrate --noinput -v0
$PY manage.py collectstatic --noinput -v0
$PY manage.py ensure_admin

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

mkdir -p var/log
# The worker takes shared work (default) and this Docker host's own queue.
.venv/bin/celery -A backup_project worker -Q "default,host.${HOST_ID}" --concurrency 2 \
  --loglevel INFO >var/log/worker.log 2>&1 &
pids+=($!)
# Exactly one beat: it reads schedules from the database.
.venv/bin/celery -A backup_project beat --loglevel INFO \
  --schedule var/celerybeat-schedule >var/log/beat.log 2>&1 &
pids+=($!)

log "API:    http://${HOST}:${PORT}/api/v1/health   docs: http://${HOST}:${PORT}/api/v1/docs"
log "admin:  http://${HOST}:${PORT}/admin/   (user and password: see above)"
log "logs:   var/log/worker.log, var/log/beat.log; Ctrl-C stops everything"
.venv/bin/gunicorn backup_project.wsgi --bind "${HOST}:${PORT}" --workers 2 --timeout 120 \
  --access-logfile - &
pids+=($!)
wait -n "${pids[@]}"
