# The service image: web (gunicorn), Celery worker and beat share it.
# Built where a registry is reachable; this machine never pulls it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# zstd, gzip and age let a person restore an archive by hand inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends zstd age \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN BACKUP_DATA_DIR=/tmp/build DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/build

ENV BACKUP_DATA_DIR=/data BACKUP_ROOT=/data/backups
EXPOSE 8000
CMD ["gunicorn", "backup_project.wsgi", "--config", "python:monitoring.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
