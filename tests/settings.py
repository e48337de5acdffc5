"""Settings for the test suite: the production settings, pointed at the real
PostgreSQL and Redis of this machine unless the environment says otherwise.
pytest-django creates and drops the test database (test_<name>)."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backup_service")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("BACKUP_DATA_DIR", tempfile.mkdtemp(prefix="backup-test-data-"))
# The engine here is shared by every test (and other checkouts' runs): a
# worker measuring volume sizes in the background would walk all their
# volumes at each of the suite's many worker starts. The fleet tests that
# check the measuring turn it on (children inherit this environment).
os.environ.setdefault("BACKUP_VOLUME_SIZE_INTERVAL_SECONDS", "0")

from backup_project.settings import *  # noqa: F403

# Tests fail fast rather than wait for hours.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 330
if os.environ.get("TEST_CELERY_TASK_TIME_LIMIT"):
    # A worker started by the hard time limit test: only a hard limit, so
    # only the pool's child dies, with no exception in the task (Celery's
    # prefork pool arms the hard timer only after the soft one fired).
    CELERY_TASK_SOFT_TIME_LIMIT = None
    CELERY_TASK_TIME_LIMIT = int(os.environ["TEST_CELERY_TASK_TIME_LIMIT"])

# The manifest storage needs collectstatic; tests render pages without it.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
