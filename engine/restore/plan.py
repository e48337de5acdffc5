"""What a restore will do, decided before anything is touched.

From backup.json (read from the archive's first member) and the app as it
runs now: which volumes get their files back, which database containers get
their dumps, and whether that is possible at all."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import docker

from engine.archive.layout import BACKUP_JSON
from engine.errors import ArchiveError, EngineError
from engine.inventory import AppInfo, DatabaseInfo
from engine.restore.checks import parse_backup_json
from engine.restore.database_volumes import data_dir_engine, recorded_database_volumes

OpenStream = Callable[[], AbstractContextManager[BinaryIO]]


class RestoreNotPossible(EngineError):
    """The restore was refused before anything changed."""


@dataclass
class RestorePlan:
    backup: dict[str, Any]
    raw_volumes: list[str]  # volumes whose files are extracted and swapped in
    skipped_volumes: dict[str, str] = field(default_factory=dict)  # name -> why
    # database container service -> (container as it runs now, its dump entries)
    databases: dict[str, tuple[DatabaseInfo, list[dict[str, Any]]]] = field(default_factory=dict)


def read_backup_json(open_stream: OpenStream) -> dict[str, Any]:
    """backup.json, the first member: cheap, the rest is not read."""
    with open_stream() as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                member = tar.next()
                if member is None or member.name != BACKUP_JSON:
                    raise ArchiveError("archive does not start with backup.json")
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise ArchiveError("backup.json is not a regular file")
                # Shape checked: a JSON list is an ArchiveError, not an AttributeError later.
                return parse_backup_json(extracted.read())
        except (tarfile.TarError, ValueError, EOFError) as exc:
            raise ArchiveError(f"archive is unreadable: {exc}") from exc


def _mounted_volumes(client: docker.DockerClient, container_id: str) -> set[str]:
    attrs = client.api.inspect_container(container_id)
    return {m["Name"] for m in attrs.get("Mounts", []) if m.get("Type") == "volume"}


def make_plan(
    client: docker.DockerClient,
    app: AppInfo,
    backup: dict[str, Any],
    restore_database: bool,
) -> RestorePlan:
    service_of = {c["name"]: c["service"] for c in backup.get("containers", [])}
    dumps_by_service: dict[str, list[dict[str, Any]]] = {}
    for dump in backup.get("databases", []):
        service = service_of.get(dump["container"], dump["container"])
        dumps_by_service.setdefault(service, []).append(dump)
    current_dbs = {db.container.service: db for db in app.databases}
    plan = RestorePlan(backup=backup, raw_volumes=[])
    db_volumes: dict[str, str] = {}  # volume -> service of the database using it
    for service, db in current_dbs.items():
        for volume in _mounted_volumes(client, db.container.id):
            db_volumes[volume] = service
    # Its container may be gone: backup.json, and the data there now, say so too.
    for volume, service in recorded_database_volumes(backup).items():
        db_volumes.setdefault(volume, service)
    mountpoints = {v.name: v.mountpoint for v in app.volumes}
    if restore_database:
        for service, dumps in dumps_by_service.items():
            if service not in current_dbs:
                raise RestoreNotPossible(
                    f"the backup holds dumps of the {service!r} database, but app "
                    f"{app.app_id} has no running-capable {service!r} database container; "
                    "recreate the app first, or restore without the database"
                )
            plan.databases[service] = (current_dbs[service], dumps)
    for volume in (v["name"] for v in backup.get("volumes", [])):
        service = db_volumes.get(volume)
        engine = None
        if service is None and not restore_database:
            engine = data_dir_engine(mountpoints.get(volume, ""))
        if service is None and engine is None:
            plan.raw_volumes.append(volume)
        elif not restore_database:
            what = f"holds a {engine} data directory" if engine else "database volume"
            plan.skipped_volumes[volume] = f"{what}; database restore not requested: left as it is"
        elif service in plan.databases:
            # The logical dump is the consistent copy; raw files of a live
            # database may be torn. The dump replaces the data instead.
            plan.skipped_volumes[volume] = f"restored from the {service} database dump"
        else:
            plan.raw_volumes.append(volume)
    return plan
