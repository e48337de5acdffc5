"""GET apps' entries written as plain dicts: the same output as
serializers.AppSerializer (which stays the schema's description), without
DRF's per-field machinery, which took two thirds of a 400-app listing's
time (bench/bench_fleet.py). tests/api/test_app_json.py keeps them equal."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from snapshots.selectors import AppSummary

_DATETIME = serializers.DateTimeField()  # the API's datetime format, as the serializers write it


def app_json(app: AppSummary, last_drill: dict[str, Any] | None) -> dict[str, Any]:
    host = app.host
    backups = app.backups
    last = backups.last_backup_at
    return {
        "app_id": app.app_id,
        "present": app.present,
        "host_id": app.host_id,
        "host_online": None if host is None else host.online,
        "inventory_age_seconds": None if host is None else host.inventory_age_seconds,
        "inventory_stale": None if host is None else host.inventory_stale,
        "working_dir": app.working_dir,
        "containers": [
            {
                "name": c.name,
                "service": c.service,
                "image": c.image,
                "state": c.state,
                "one_off": c.one_off,
            }
            for c in app.containers
        ],
        "volumes": [{"name": v.name, "size_bytes": v.size_bytes} for v in app.volumes],
        "databases": [
            {
                "container": d.container.name,
                "service": d.container.service,
                "engine": d.engine,
                "databases": list(d.databases),
            }
            for d in app.databases
        ],
        "config_files": [{"name": f.archive_name, "path": f.path} for f in app.config_files],
        "backups": {
            "snapshots": backups.snapshots,
            "size_bytes": backups.size_bytes,
            "last_backup_at": None if last is None else _DATETIME.to_representation(last),
        },
        "last_drill": last_drill,
    }
