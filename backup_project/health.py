"""GET /api/v1/health: is this service able to work right now?

No authentication: load balancers and Compose healthchecks call it. It reveals
only which dependency fails, never connection details.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from backup_project.celery import app as celery_app

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not usable"
        logger.warning("health: database check failed: %s", type(exc).__name__)
        return "error"
    return "ok"


def check_broker() -> str:
    if settings.CELERY_EMBEDDED_BROKER:
        return "embedded"
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning("health: broker check failed: %s", type(exc).__name__)
        return "error"
    return "ok"


def health(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(state != "error" for state in checks.values())
    status = 200 if healthy else 503
    body = {
        "code": status,
        "message": "ok" if healthy else "unhealthy",
        "data": {"status": "ok" if healthy else "error", "checks": checks},
    }
    return JsonResponse(body, status=status)
