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
