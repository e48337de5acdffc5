"""Settings for the test suite: the production settings, pointed at the real
PostgreSQL and Redis of this machine unless the environment says otherwise.
pytest-django creates and drops the test database (test_<name>)."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backup_service")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("BACKUP_DATA_DIR", tempfile.mkdtemp(prefix="backup-test-data-"))

from backup_project.settings import *  # noqa: F403

# Tests fail fast rather than wait for hours.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 330

# The manifest storage needs collectstatic; tests render pages without it.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
