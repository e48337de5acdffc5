"""Make a host's heartbeat or inventory look old, by the database's clock
(the same clock the selectors compare against)."""

from __future__ import annotations

from snapshots.db_time import db_ago


def age_host(host_id: str, heartbeat_seconds: float = 0, inventory_seconds: float = 0) -> None:
    from fleet.models import Host

    fields = {}
    if heartbeat_seconds:
        fields["last_heartbeat"] = db_ago(heartbeat_seconds)
    if inventory_seconds:
        fields["inventory_at"] = db_ago(inventory_seconds)
    Host.objects.filter(pk=host_id).update(**fields)


def report_app(app_id: str, host_id: str | None = None) -> None:
    """Store APP_ID's inventory (of the real engine) under HOST_ID (this
    host's by default), online, as that host's worker does: what the web
    process reads instead of Docker. One app, not the whole engine, so it
    is quick beside other tests' stacks."""
    from django.conf import settings
    from django.db.models.functions import Now

    from engine.discovery import get_app
    from engine.docker_client import connect
    from fleet.inventory_store import to_json
    from fleet.models import Host, HostApp

    host = host_id or settings.BACKUP_HOST_ID
    client = connect(settings.DOCKER_HOST)
    try:
        inventory = to_json(get_app(client, app_id))
    finally:
        client.close()
    Host.objects.update_or_create(
        id=host, defaults={"last_heartbeat": Now(), "inventory_at": Now()}
    )
    HostApp.objects.update_or_create(host_id=host, app_id=app_id, defaults={"inventory": inventory})
