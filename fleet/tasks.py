"""Fleet tasks. Names are stable strings (beat and the API send them by name)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from fleet.services import refresh_inventory
from fleet.volume_sizes import measure_due_sizes


@shared_task(name="fleet.refresh_inventory")
def refresh_inventory_task(measure_sizes: bool = False) -> dict[str, Any]:
    """Sent to host.<id> when asked (POST hosts/<id>/refresh): only that
    host's worker can see its engine. MEASURE_SIZES: walk every volume now
    too (otherwise the inventory thread measures the due ones)."""
    apps = refresh_inventory()
    measured = measure_due_sizes(max_age_seconds=0) if measure_sizes else 0
    return {"host_id": settings.BACKUP_HOST_ID, "apps": apps, "sizes_measured": measured}
