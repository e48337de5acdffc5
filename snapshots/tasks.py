"""Celery tasks of the snapshots app. Names are explicit and stable because
django-celery-beat stores them as strings."""

from __future__ import annotations

import socket

from celery import shared_task
from django.conf import settings


@shared_task(name="snapshots.ping")
def ping(payload: str = "") -> dict[str, str]:
    """Echo PAYLOAD with the host that answered: proves a worker is alive and
    on which Docker host it runs."""
    return {
        "payload": payload,
        "host_id": settings.BACKUP_HOST_ID,
        "hostname": socket.gethostname(),
    }
