"""Which volumes of an archive hold a database's data, even when the
database's container is gone.

A restore without its databases (`--no-database`) must leave database
volumes as they are; so must one whose database is restored from its dump
(raw files of a live server may be torn). The running containers say which
volumes a database mounts only while those containers exist. So two more
sources are read: backup.json's `database_volumes` (recorded by every
backup since it was added: volume -> the database's service), and, for
older archives, the volume's current data on this host (a database data
directory's markers: PG_VERSION, ibdata1, ...): what a restore would
overwrite is exactly what is there now."""

from __future__ import annotations

import os
from typing import Any

from engine.database_detection import ENGINE_NAMES, find_data_dirs
from engine.inventory import AppInfo

DATABASE_VOLUMES_KEY = "database_volumes"


def database_volumes_of(app: AppInfo) -> dict[str, str]:
    """For backup.json: volume -> service of the database container whose
    data directory is in it (as discovery found them)."""
    databases = {db.container.id for db in app.databases}
    return {
        d.volume: d.container.service
        for d in sorted(app.data_dirs, key=lambda d: d.volume)
        if d.container.id in databases
    }


def recorded_database_volumes(backup: dict[str, Any]) -> dict[str, str]:
    """volume -> database service, as BACKUP (backup.json) recorded them."""
    recorded = backup.get(DATABASE_VOLUMES_KEY)
    if not isinstance(recorded, dict):
        return {}
    return {str(k): str(v) for k, v in recorded.items()}


def data_dir_engine(mountpoint: str) -> str | None:
    """The name of the database engine whose data directory the volume at
    MOUNTPOINT holds now (its markers), None if none does or it cannot be
    read here."""
    if not mountpoint or not os.path.isdir(mountpoint):
        return None
    found = find_data_dirs(mountpoint)
    return ENGINE_NAMES[found[0][1]] if found else None
