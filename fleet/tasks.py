"""Fleet tasks. Names are stable strings (beat and the API send them by name)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from fleet.services import refresh_inventory


@shared_task(name="fleet.refresh_inventory")
def refresh_inventory_task() -> dict[str, Any]:
    """Sent to host.<id> when asked (POST hosts/<id>/refresh): only that
    host's worker can see its engine."""
    return {"host_id": settings.BACKUP_HOST_ID, "apps": refresh_inventory()}
