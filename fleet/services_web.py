"""What the web process asks of hosts: it sends messages, never calls Docker."""

from __future__ import annotations

import logging

from backup_project.celery import app as celery_app
from fleet.errors import RefreshNotQueued, UnknownHost
from fleet.models import Host
from fleet.routing import host_queue

logger = logging.getLogger(__name__)

REFRESH_TASK = "fleet.refresh_inventory"


def request_refresh(host_id: str) -> str:
    """Send HOST_ID's worker a refresh of its inventory; the queue it went to."""
    if not isinstance(host_id, str) or not Host.objects.filter(pk=host_id[:128]).exists():
        raise UnknownHost(
            f"no host {host_id[:80]!r}: no worker with that BACKUP_HOST_ID has reported"
        )
    queue = host_queue(host_id)
    try:
        celery_app.send_task(REFRESH_TASK, queue=queue, expires=300)
    except Exception as exc:  # kombu raises many types for "no broker"
        logger.error(
            "could not queue %s for host %s: %s", REFRESH_TASK, host_id, type(exc).__name__
        )
        raise RefreshNotQueued(
            f"could not queue the refresh ({type(exc).__name__}); is the broker running?"
        ) from exc
    return queue
