"""Writes of a host's own worker: its host row, heartbeat and inventory.

Only the worker on a Docker host calls these (it has the engine's socket
and the volumes); the web process only reads what they wrote."""

from __future__ import annotations

import logging
import socket
import tomllib
from functools import cache
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from engine.discovery import discover_apps
from engine.docker_client import connect
from engine.errors import EngineError
from fleet.inventory_store import to_json
from fleet.models import Host, HostApp
from fleet.volume_sizes import carry_sizes

logger = logging.getLogger(__name__)


@cache
def worker_version() -> str:
    """This software's version, from pyproject.toml (shipped in the image)."""
    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def register_host(queues: list[str]) -> Host:
    """This host's row, created or brought up to date at worker start."""
    host, _ = Host.objects.update_or_create(
        id=settings.BACKUP_HOST_ID,
        defaults={
            "hostname": socket.gethostname(), "worker_version": worker_version(),
            "queues": sorted(queues), "last_heartbeat": Now(),
        },
    )  # fmt: skip
    return host


def heartbeat() -> None:
    """This host's worker is alive (by the database's clock)."""
    updated = Host.objects.filter(pk=settings.BACKUP_HOST_ID).update(last_heartbeat=Now())
    if not updated:  # the row was deleted by an operator: come back
        register_host([])


def refresh_inventory() -> int:
    """Discover this host's apps and replace the stored inventory with them;
    the number of apps. No volume is walked here: each keeps the size
    measured before (fleet.volume_sizes measures them apart). An engine that
    does not answer keeps the last inventory (shown stale by its age) and
    records why."""
    host_id = settings.BACKUP_HOST_ID
    Host.objects.get_or_create(id=host_id, defaults={"hostname": socket.gethostname()})
    try:
        client = connect(settings.DOCKER_HOST)
        try:
            docker_version = str(client.version().get("Version", ""))
            apps = discover_apps(client, settings.BACKUP_EXCLUDED_PROJECTS)
        finally:
            client.close()
    except EngineError as exc:
        logger.warning("inventory of host %s not refreshed: %s", host_id, exc)
        Host.objects.filter(pk=host_id).update(inventory_error=str(exc)[:2000])
        raise
    except Exception as exc:  # docker-py raises requests' errors for a dead socket
        reason = f"the Docker engine did not answer ({type(exc).__name__})"
        logger.warning("inventory of host %s not refreshed: %s", host_id, reason)
        Host.objects.filter(pk=host_id).update(inventory_error=reason)
        raise EngineError(reason) from exc
    with transaction.atomic():
        # One refresh at a time per host (the timer and a requested one).
        host = Host.objects.select_for_update().get(pk=host_id)
        found = {app.app_id: to_json(app) for app in apps}
        carry_sizes(
            dict(HostApp.objects.filter(host=host).values_list("app_id", "inventory")), found
        )
        HostApp.objects.filter(host=host).exclude(app_id__in=list(found)).delete()
        HostApp.objects.bulk_create(
            [HostApp(host=host, app_id=app_id, inventory=data) for app_id, data in found.items()],
            update_conflicts=True, unique_fields=["host", "app_id"],
            update_fields=["inventory", "updated_at"],
        )  # fmt: skip
        Host.objects.filter(pk=host_id).update(
            docker_version=docker_version, inventory_at=Now(), inventory_error="",
            last_heartbeat=Now(),
        )  # fmt: skip
    logger.info("inventory of host %s refreshed: %d apps", host_id, len(found))
    return len(found)
