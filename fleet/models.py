"""The Docker hosts of the fleet and what their workers last reported.

A host row is written only by that host's worker (heartbeat, inventory);
the web process reads it. Online/offline and stale are not stored: they
are the age of `last_heartbeat` / `inventory_at` by the database's clock,
so a worker that died simply stops making them young."""

from __future__ import annotations

from django.db import models


class Host(models.Model):
    id = models.CharField(primary_key=True, max_length=128)  # BACKUP_HOST_ID
    hostname = models.CharField(max_length=255, blank=True)
    docker_version = models.CharField(max_length=64, blank=True)
    worker_version = models.CharField(max_length=64, blank=True)
    queues = models.JSONField(default=list)  # the queues its worker consumes
    registered_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    # When the inventory below was last written whole; null: never.
    inventory_at = models.DateTimeField(null=True, blank=True)
    # Why the last refresh failed (engine down, ...); empty after a good one.
    inventory_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class HostApp(models.Model):
    """One app (Compose project) on one host, as the host's worker found it.
    `inventory` holds containers, volumes (with sizes), databases (engine
    and names, never credentials) and config files."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="apps")
    app_id = models.CharField(max_length=255)
    inventory = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app_id", "host_id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "app_id"], name="fleet_one_app_per_host")
        ]
        indexes = [models.Index(fields=["app_id"], name="fleet_hostapp_app_id")]

    def __str__(self) -> str:
        return f"{self.app_id}@{self.host_id}"
