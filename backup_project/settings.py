"""Django settings: every value comes from the environment (see .env.example).

Embedded default (nothing set): SQLite and backups under ./var, a filesystem
Celery broker under ./var/celery, so one machine runs the API, a worker and
beat with no external service. Production sets DATABASE_URL (PostgreSQL) and
CELERY_BROKER_URL (Redis), as docker-compose.yml does.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from backup_project.env import Env

env = Env()
BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env.path("BACKUP_DATA_DIR", BASE_DIR / "var")


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or a random key kept in DATA_DIR for the embedded
    setup, so sessions survive restarts without anyone choosing a key."""
    key = env.str("DJANGO_SECRET_KEY")
    if key:
        return key
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.touch(mode=0o600)
    key_file.write_text(key)
    return key


SECRET_KEY = _secret_key()
DEBUG = env.bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # First: its templates override the admin's (the dashboard as the start page).
    "console",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "snapshots",
    "schedules",
    "drills",
    "fleet",
]

MIDDLEWARE = [
    # First: a fresh log context (monitoring/log_context.py) for everything after it.
    "monitoring.middleware.LogContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backup_project.urls"
WSGI_APPLICATION = "backup_project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASE_URL = env.url(
    "DATABASE_URL",
    default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Workers (with their heartbeat and inventory threads) and the web process
    # share the file. timeout: wait for a lock instead of failing. IMMEDIATE:
    # a transaction takes the write lock at BEGIN, so it waits there; a
    # deferred one that read first and then writes gets "database is locked"
    # at once, without waiting (SQLite cannot let it wait: that could
    # deadlock). WAL: readers and one writer do not block each other.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Backups --------------------------------------------------------------
BACKUP_ROOT = env.path("BACKUP_ROOT", DATA_DIR / "backups")
# Identifies this Docker host: its worker listens on the queue host.<id>.
BACKUP_HOST_ID = env.str("BACKUP_HOST_ID", socket.gethostname())
if not BACKUP_HOST_ID.replace("-", "").replace("_", "").replace(".", "").isalnum():
    raise ImproperlyConfigured("BACKUP_HOST_ID may hold only letters, digits, '.', '-' and '_'")
# Compose projects that are the platform itself, never offered as apps.
BACKUP_EXCLUDED_PROJECTS = env.list("BACKUP_EXCLUDED_PROJECTS", ["websoft9"])
DOCKER_HOST = env.str("DOCKER_HOST", "unix:///var/run/docker.sock")
# Database dumps are spooled here before going into the archive.
BACKUP_SPOOL_DIR = env.path("BACKUP_SPOOL_DIR", DATA_DIR / "spool")
# Each snapshot's index (paths, sizes, times, inodes): what an incremental
# compares with, readable without the archive's key. On the worker's host.
BACKUP_INDEX_DIR = env.path("BACKUP_INDEX_DIR", DATA_DIR / "index")
BACKUP_COMPRESSION = env.str("BACKUP_COMPRESSION", "zstd")
if BACKUP_COMPRESSION not in ("zstd", "gzip"):
    raise ImproperlyConfigured(
        f"BACKUP_COMPRESSION must be zstd or gzip, got {BACKUP_COMPRESSION!r}"
    )
BACKUP_COMPRESSION_LEVEL = env.int("BACKUP_COMPRESSION_LEVEL", 3, minimum=1)  # zstd
BACKUP_GZIP_LEVEL = env.int("BACKUP_GZIP_LEVEL", 2, minimum=0)  # ISA-L gzip: 0-3
# zstd worker threads: -1 = one per core, 0 = compress in the calling thread.
BACKUP_COMPRESSION_THREADS = env.int("BACKUP_COMPRESSION_THREADS", -1, minimum=-1)
# Encryption (age): public recipients let a worker write backups it cannot read.
# Each key is checked here: a malformed one stops startup, naming the variable.
BACKUP_AGE_RECIPIENTS = env.age_recipients("BACKUP_AGE_RECIPIENTS")
BACKUP_AGE_IDENTITY_FILE = env.age_identity_file("BACKUP_AGE_IDENTITY_FILE")
BACKUP_PASSPHRASE = env.secret("BACKUP_PASSPHRASE")
if BACKUP_AGE_RECIPIENTS and BACKUP_PASSPHRASE:
    raise ImproperlyConfigured(
        "set BACKUP_AGE_RECIPIENTS or BACKUP_PASSPHRASE, not both: an age file is "
        "encrypted either to public keys or to one passphrase"
    )
BACKUP_DEFAULT_CONSISTENCY = env.str("BACKUP_DEFAULT_CONSISTENCY", "live")
if BACKUP_DEFAULT_CONSISTENCY not in ("live", "pause", "stop"):
    raise ImproperlyConfigured("BACKUP_DEFAULT_CONSISTENCY must be live, pause or stop")
# Backups run at low priority so the apps keep their speed.
BACKUP_NICE = env.int("BACKUP_NICE", 10, minimum=0)
BACKUP_IO_CLASS = env.str("BACKUP_IO_CLASS", "best-effort")
if BACKUP_IO_CLASS not in ("best-effort", "idle", "none"):
    raise ImproperlyConfigured("BACKUP_IO_CLASS must be best-effort, idle or none")
# A restore loads MySQL/MariaDB dumps into a shadow database of the running
# server while it stages the volumes, and swaps the tables in during the
# downtime (engine/dumps/mysql_shadow.py); off: loaded in the downtime.
BACKUP_RESTORE_LOAD_WHILE_RUNNING = env.bool("BACKUP_RESTORE_LOAD_WHILE_RUNNING", True)
# Restore drills (drills/conf.py): the whole drill's time limit, and the free
# disk a drill wants first (dumps x factor + a margin) or it is skipped.
BACKUP_DRILL_TIME_LIMIT_SECONDS = env.int("BACKUP_DRILL_TIME_LIMIT_SECONDS", 3600, minimum=1)
BACKUP_DRILL_MIN_FREE_BYTES = env.int("BACKUP_DRILL_MIN_FREE_BYTES", 512 << 20, minimum=0)
try:
    BACKUP_DRILL_DISK_FACTOR = float(env.str("BACKUP_DRILL_DISK_FACTOR", "3"))
except ValueError:
    BACKUP_DRILL_DISK_FACTOR = -1.0
if not BACKUP_DRILL_DISK_FACTOR >= 1:
    raise ImproperlyConfigured("BACKUP_DRILL_DISK_FACTOR must be a number, at least 1")
# A run holds its app's lease for this long and renews it every quarter of
# it; a run (or lease) not renewed for this long by the database's clock
# belonged to a dead worker, and its host's recovery finishes or undoes it.
BACKUP_LEASE_SECONDS = env.int("BACKUP_LEASE_SECONDS", 60, minimum=4)
# A half-written file older than this is swept (its writer has no heartbeat).
BACKUP_STALE_SECONDS = env.int("BACKUP_STALE_SECONDS", 300, minimum=10)
# A run still pending after this long was never picked up (its message was
# lost, or no worker serves its host's queue): it is failed with that reason.
BACKUP_PENDING_TIMEOUT_SECONDS = env.int("BACKUP_PENDING_TIMEOUT_SECONDS", 6 * 3600, minimum=60)
# How often each worker looks for its host's runs to recover.
BACKUP_RECOVERY_INTERVAL_SECONDS = env.int("BACKUP_RECOVERY_INTERVAL_SECONDS", 60, minimum=5)
# Fleet (fleet/): each worker heartbeats its host row this often and
# re-reports its host's inventory (apps, volumes with sizes) this often; a
# host with no heartbeat for BACKUP_HOST_OFFLINE_SECONDS is offline (new work
# for its apps is refused), an inventory older than BACKUP_INVENTORY_STALE_SECONDS
# is shown stale.
BACKUP_HEARTBEAT_SECONDS = env.int("BACKUP_HEARTBEAT_SECONDS", 15, minimum=1)
BACKUP_INVENTORY_INTERVAL_SECONDS = env.int("BACKUP_INVENTORY_INTERVAL_SECONDS", 60, minimum=1)
BACKUP_HOST_OFFLINE_SECONDS = env.int("BACKUP_HOST_OFFLINE_SECONDS", 60, minimum=2)
BACKUP_INVENTORY_STALE_SECONDS = env.int("BACKUP_INVENTORY_STALE_SECONDS", 180, minimum=2)
# Volume sizes walk every file: measured apart from the refresh, at low
# priority, once they are older than this (fleet/volume_sizes.py); 0: never
# in the background (only when a refresh asks for sizes).
BACKUP_VOLUME_SIZE_INTERVAL_SECONDS = env.int(
    "BACKUP_VOLUME_SIZE_INTERVAL_SECONDS", 3600, minimum=0
)
if BACKUP_HOST_OFFLINE_SECONDS <= BACKUP_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "BACKUP_HOST_OFFLINE_SECONDS must be greater than BACKUP_HEARTBEAT_SECONDS"
    )
# How often beat looks for apps with no successful backup for longer than their schedules allow.
BACKUP_MISSED_CHECK_SECONDS = env.int("BACKUP_MISSED_CHECK_SECONDS", 300, minimum=5)
# Retention's short rules: failed snapshots and pre-restore safety snapshots are
# removed this many days after they were made (schedules/retention.py).
BACKUP_RETENTION_FAILED_DAYS = env.int("BACKUP_RETENTION_FAILED_DAYS", 7, minimum=1)
BACKUP_RETENTION_PRE_RESTORE_DAYS = env.int("BACKUP_RETENTION_PRE_RESTORE_DAYS", 14, minimum=1)
# A due backup with no completed snapshot this long after its time is reported missed.
BACKUP_MISSED_GRACE_SECONDS = env.int("BACKUP_MISSED_GRACE_SECONDS", 2 * 3600, minimum=0)
# A scheduled backup finding its app busy waits this long, then is recorded skipped.
BACKUP_SCHEDULE_BUSY_WAIT_SECONDS = env.int("BACKUP_SCHEDULE_BUSY_WAIT_SECONDS", 1800, minimum=0)
# Fernet keys for notification target URLs stored in the database: the first
# encrypts, all decrypt (rotation: manage.py rotate_secrets). Unset: one key
# derived from SECRET_KEY. A malformed key stops startup.
BACKUP_SECRET_KEYS = env.list("BACKUP_SECRET_KEYS", [])
try:
    from schedules.secrets import parse_keys

    parse_keys(BACKUP_SECRET_KEYS)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# Notifications: seconds one delivery waits for its targets, attempts in all,
# seconds before the first retry (doubled each time), and their queue.
BACKUP_NOTIFY_TIMEOUT_SECONDS = env.int("BACKUP_NOTIFY_TIMEOUT_SECONDS", 20, minimum=1)
BACKUP_NOTIFY_ATTEMPTS = env.int("BACKUP_NOTIFY_ATTEMPTS", 3, minimum=1)
BACKUP_NOTIFY_RETRY_SECONDS = env.int("BACKUP_NOTIFY_RETRY_SECONDS", 30, minimum=0)
BACKUP_NOTIFY_QUEUE = env.str("BACKUP_NOTIFY_QUEUE", "default")
# One queue for all backup/verify/restore tasks; empty: host.<id> of the app's host (fleet).
BACKUP_TASK_QUEUE = env.str("BACKUP_TASK_QUEUE", "")
# POST restore?wait=true blocks at most this long (keep it under gunicorn's timeout).
BACKUP_API_WAIT_SECONDS = env.int("BACKUP_API_WAIT_SECONDS", 100, minimum=1)
# Off-site copies: S3 locations by name ("s3" from BACKUP_S3_*, more from
# BACKUP_S3_LOCATIONS), parsed strictly in backup_project/s3_settings.py.
from backup_project.s3_settings import s3_locations  # noqa: E402

BACKUP_S3_STORAGES = s3_locations(env)
# A multipart upload that no run owns and older than this is aborted by the
# cleanup (S3 keeps, and bills, its parts for ever otherwise).
BACKUP_S3_ORPHAN_SECONDS = env.int("BACKUP_S3_ORPHAN_SECONDS", 24 * 3600, minimum=600)
# After an upload, read the whole object back (not only HEAD: size and SHA-256 metadata).
BACKUP_S3_DEEP_CHECK = env.bool("BACKUP_S3_DEEP_CHECK", False)

# --- Monitoring -----------------------------------------------------------
# GET /metrics answers a request with `Authorization: Bearer <this token>`
# (or _FILE), from an address in BACKUP_METRICS_ALLOW, or with an API key.
BACKUP_METRICS_TOKEN = env.secret("BACKUP_METRICS_TOKEN")
BACKUP_METRICS_ALLOW = env.networks("BACKUP_METRICS_ALLOW")

# --- Celery ---------------------------------------------------------------
# Empty broker URL = embedded mode: a filesystem transport under DATA_DIR, good
# for one machine (web, worker and beat share the folder). Production: Redis.
CELERY_BROKER_URL = env.url(
    "CELERY_BROKER_URL", default="", schemes=("redis", "rediss", "amqp", "filesystem")
)
CELERY_EMBEDDED_BROKER = CELERY_BROKER_URL == ""
if CELERY_EMBEDDED_BROKER:
    _queue_dir = DATA_DIR / "celery" / "queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    (DATA_DIR / "celery" / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(DATA_DIR / "celery" / "processed"),
        "store_processed": False,
        # Its exchange tables too (kombu's default is ./control, in the checkout).
        "control_folder": str(DATA_DIR / "celery" / "control"),
    }

# A backup of a large app runs for hours: limits are generous but finite.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", 6 * 3600, minimum=1)
CELERY_TASK_TIME_LIMIT = env.int(
    "CELERY_TASK_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT + 600, minimum=1
)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be greater than CELERY_TASK_SOFT_TIME_LIMIT "
        "so the task can clean up after the soft limit"
    )
if not CELERY_EMBEDDED_BROKER:
    # Redis redelivers an unacknowledged message after visibility_timeout: it must
    # exceed the longest task, or a running backup would start a second time.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 3600}
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The DatabaseScheduler copies this into its tables at start. Recovery is a
# duty, not a start-up hook: every host's dead runs are looked for on a timer.
CELERY_BEAT_SCHEDULE = {
    "recover-dead-runs": {
        "task": "snapshots.recover_hosts",
        "schedule": float(BACKUP_RECOVERY_INTERVAL_SECONDS),
        "options": {"queue": "default", "expires": float(BACKUP_RECOVERY_INTERVAL_SECONDS)},
    },
    # Beat itself notices an app whose backups stopped (dead worker, stopped host).
    "check-missed-backups": {
        "task": "schedules.check_missed_backups",
        "schedule": float(BACKUP_MISSED_CHECK_SECONDS),
        "options": {"queue": "default", "expires": float(BACKUP_MISSED_CHECK_SECONDS)},
    },
    # Retention also runs daily, not only after scheduled backups.
    "apply-retention-daily": {
        "task": "schedules.apply_retention_all",
        "schedule": crontab(minute="30", hour="3"),
        "options": {"queue": "default"},
    },
}
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    # drf-spectacular's, with each operation's API key scope in its description.
    "DEFAULT_SCHEMA_CLASS": "snapshots.api.scopes.ScopedAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Docker app backup service",
    "VERSION": "1.0.0",
    # Swagger UI assets come from the sidecar package: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "DESCRIPTION": (
        "Backup and restore of Docker Compose apps. Every response is "
        '{"code": <http status>, "message": "...", "data": ...}. Send an API key in the '
        "X-API-Key header (python manage.py apikey create NAME)."
    ),
    # Snapshot.status and Run.state share one set of choices: one enum, one name.
    "ENUM_NAME_OVERRIDES": {"ProgressStateEnum": "snapshots.models.Run.State"},
    # The schema and Swagger UI are public; an X-API-Key sent along (Swagger
    # UI's "Authorize") must not make them fail when it is wrong.
    "SERVE_AUTHENTICATION": [],
}

# --- Logging --------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}"
    )
# plain: "time LEVEL logger: [run=.. app=.. host=.. task=..] message";
# json: one object per line (monitoring/log_format.py). Both carry the ids
# in play (monitoring/log_context.py); the worker's Celery handlers get the
# same (monitoring/celery_logging.py).
LOG_FORMAT = env.str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "monitoring.log_context.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "monitoring.log_format.PlainFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s: %(log_context)s%(message)s",
        },
        "json": {"()": "monitoring.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
