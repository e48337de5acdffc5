"""Celery tasks: retention after each scheduled backup (schedules.apply_retention,
sent by the firing code) and daily for every app (schedules.apply_retention_all,
sent by beat). Thin: ids in, the service does the work."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from backup_project.celery import app as celery_app
from schedules.retention_service import apply_retention_for_app, retention_targets
from schedules.runner import last_host
from snapshots.services.snapshots import task_queue

logger = logging.getLogger(__name__)

APPLY_RETENTION = "schedules.apply_retention"


# Deletes are idempotent (an already deleted snapshot is skipped), so a
# redelivered message is harmless: acks_late.
@shared_task(name=APPLY_RETENTION, acks_late=True)
def apply_retention(app_id: str, host_id: str | None = None) -> dict[str, Any]:
    """HOST_ID: the app on that host only (a schedule naming its host);
    None: the app id's snapshots on every host (messages sent before)."""
    return apply_retention_for_app(app_id, host_id=host_id).summary()


@shared_task(name="schedules.apply_retention_all")
def apply_retention_all() -> dict[str, Any]:
    """One apply_retention per app with a retention rule, on the app's host
    queue (the files are on that host's storage): one app's failure, or a
    slow storage, does not hold the others up."""
    queued = []
    for app_id, host_id in retention_targets():
        try:
            # The host holding its local archives: the schedule's, or for a
            # schedule naming none the host of the app's latest snapshot.
            queue = task_queue(host_id or last_host(app_id))
            celery_app.send_task(APPLY_RETENTION, args=[app_id, host_id or None], queue=queue)
        except Exception as exc:  # kombu raises many types for "no broker"
            logger.error("could not queue retention for %s: %s", app_id, type(exc).__name__)
            continue
        queued.append(f"{app_id}@{host_id}" if host_id else app_id)
    return {"queued": queued}
