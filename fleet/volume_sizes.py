"""Volume sizes in a host's stored inventory, measured apart from the
inventory refresh.

Measuring a size walks the whole volume (every file's lstat, as `du -sb`
does): on a host with large volumes that is minutes of disk and CPU. So the
refresh (every BACKUP_INVENTORY_INTERVAL_SECONDS) never walks a volume: it
keeps each volume's last measured size from the stored inventory, and the
worker's inventory thread measures the sizes older than
BACKUP_VOLUME_SIZE_INTERVAL_SECONDS afterwards, at low CPU and I/O priority,
one volume at a time, writing each app's sizes as soon as they are known.
A volume never measured yet shows `size_bytes: null`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from engine.discovery import apparent_size
from fleet.models import HostApp

logger = logging.getLogger(__name__)

Inventory = dict[str, Any]  # HostApp.inventory


def carry_sizes(previous: dict[str, Inventory], found: dict[str, Inventory]) -> None:
    """Give each volume of FOUND (app id -> new inventory) the size measured
    before for the same volume at the same mountpoint in PREVIOUS."""
    for app_id, data in found.items():
        known = {
            (v["name"], v.get("mountpoint")): v
            for v in previous.get(app_id, {}).get("volumes", [])
            if v.get("size_measured_at")
        }
        for volume in data.get("volumes", []):
            old = known.get((volume["name"], volume.get("mountpoint")))
            if old is not None and volume.get("size_bytes") is None:
                volume["size_bytes"] = old.get("size_bytes")
                volume["size_measured_at"] = old["size_measured_at"]


def _due(volume: dict[str, Any], now: datetime, max_age_seconds: float) -> bool:
    measured = volume.get("size_measured_at")
    if not measured:
        return True
    try:
        age = (now - datetime.fromisoformat(measured)).total_seconds()
    except (TypeError, ValueError):
        return True
    return age >= max_age_seconds


def _measure(mountpoint: str) -> int | None:
    """MOUNTPOINT's apparent size; None when it cannot be read here (a
    worker without /var/lib/docker/volumes mounted)."""
    if not os.path.isdir(mountpoint):
        return None
    try:
        return apparent_size(mountpoint)
    except OSError as exc:
        logger.warning("cannot measure volume at %s: %s", mountpoint, type(exc).__name__)
        return None


def measure_due_sizes(
    max_age_seconds: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    measure: Callable[[str], int | None] = _measure,
) -> int:
    """Measure this host's stored volumes whose size is older than
    MAX_AGE_SECONDS (default BACKUP_VOLUME_SIZE_INTERVAL_SECONDS; 0: all),
    app by app, until STOP() says the worker is shutting down; the number
    of volumes measured. A volume the refresh removed meanwhile is dropped."""
    limit = (
        settings.BACKUP_VOLUME_SIZE_INTERVAL_SECONDS if max_age_seconds is None else max_age_seconds
    )
    host_id = settings.BACKUP_HOST_ID
    measured = 0
    now = datetime.now(UTC)
    rows = HostApp.objects.filter(host_id=host_id).values_list("pk", "inventory")
    for pk, data in rows.iterator():
        due = [v for v in data.get("volumes", []) if _due(v, now, limit)]
        if not due:
            continue
        sizes: dict[tuple[str, str], tuple[int | None, str]] = {}
        for volume in due:
            if stop():
                return measured
            size = measure(volume["mountpoint"])
            sizes[(volume["name"], volume["mountpoint"])] = (size, datetime.now(UTC).isoformat())
            measured += 1
        _store(pk, sizes)
    return measured


def _store(pk: int, sizes: dict[tuple[str, str], tuple[int | None, str]]) -> None:
    """Write SIZES into the app's row as it is now (a refresh may have
    rewritten it while we walked): only volumes still there get them."""
    with transaction.atomic():
        row = HostApp.objects.select_for_update().filter(pk=pk).first()
        if row is None:  # the app left the host meanwhile
            return
        for volume in row.inventory.get("volumes", []):
            found = sizes.get((volume["name"], volume.get("mountpoint")))
            if found is not None:
                volume["size_bytes"], volume["size_measured_at"] = found
        row.save(update_fields=["inventory"])
