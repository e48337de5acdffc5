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
# Logs and beat's state live beside the data (BACKUP_DATA_DIR, default ./var).
DATA_DIR="${BACKUP_DATA_DIR:-var}"
HOST_ID="$($PY -c 'import django,os;os.environ.setdefault("DJANGO_SETTINGS_MODULE","backup_project.settings");django.setup();from django.conf import settings;print(settings.BACKUP_HOST_ID)')"

$PY manage.py migrate --noinput -v0
$PY manage.py collectstatic --noinput -v0
$PY manage.py ensure_admin

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

mkdir -p "$DATA_DIR/log"
# LOG_FORMAT=json: no Celery banners (printed, not logged), so the logs are JSON lines.
quiet=()
[ "${LOG_FORMAT:-plain}" = json ] && quiet=(--quiet)
# The worker takes shared work (default) and this Docker host's own queue.
.venv/bin/celery -A backup_project "${quiet[@]}" worker -Q "default,host.${HOST_ID}" --concurrency 2 \
  --loglevel INFO >"$DATA_DIR/log/worker.log" 2>&1 &
pids+=($!)
# Exactly one beat: it reads schedules from the database.
.venv/bin/celery -A backup_project "${quiet[@]}" beat --loglevel INFO \
  --schedule "$DATA_DIR/celerybeat-schedule" >"$DATA_DIR/log/beat.log" 2>&1 &
pids+=($!)

log "API:    http://${HOST}:${PORT}/api/v1/health   docs: http://${HOST}:${PORT}/api/v1/docs"
log "admin:  http://${HOST}:${PORT}/admin/   (user and password: see above)"
log "logs:   $DATA_DIR/log/worker.log, $DATA_DIR/log/beat.log; Ctrl-C stops everything"
# monitoring/gunicorn_conf.py: with LOG_FORMAT=json gunicorn's own lines are JSON too.
.venv/bin/gunicorn backup_project.wsgi --config python:monitoring.gunicorn_conf \
  --bind "${HOST}:${PORT}" --workers 2 --timeout 120 \
  --access-logfile - &
pids+=($!)
wait -n "${pids[@]}"
