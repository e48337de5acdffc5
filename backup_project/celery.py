"""The Celery application. Configuration lives in Django settings (CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery

# Connects the logging signals: LOG_FORMAT and the run/app/host/task ids in
# the worker's and beat's logs.
import monitoring.celery_logging  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backup_project.settings")

app = Celery("backup_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
