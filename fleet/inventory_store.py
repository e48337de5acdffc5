"""An app's inventory as stored in the database (HostApp.inventory) and as
read back for the API.

Only what the API shows is stored: containers, volumes with their sizes,
databases (engine, container, database names, how detected) and config
files. Credentials are never stored: the worker reads them from the
container's environment when it runs a dump."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.inventory import AppInfo, ConfigFile, ContainerInfo, VolumeInfo


@dataclass(frozen=True)
class StoredDatabase:
    container: ContainerInfo
    engine: str
    databases: tuple[str, ...] = ()
    detected_by: str = ""


@dataclass(frozen=True)
class StoredApp:
    app_id: str
    containers: tuple[ContainerInfo, ...]
    volumes: tuple[VolumeInfo, ...]
    databases: tuple[StoredDatabase, ...]
    config_files: tuple[ConfigFile, ...]
    working_dir: str | None


def _container(info: ContainerInfo) -> dict[str, Any]:
    return {
        "id": info.id, "name": info.name, "service": info.service, "image": info.image,
        "state": info.state, "one_off": info.one_off,
    }  # fmt: skip


def to_json(app: AppInfo) -> dict[str, Any]:
    return {
        "containers": [_container(c) for c in app.containers],
        # Sizes are filled in by fleet.volume_sizes (measured apart, not
        # on each refresh); size_measured_at says when.
        "volumes": [
            {"name": v.name, "mountpoint": v.mountpoint, "size_bytes": v.size_bytes}
            for v in app.volumes
        ],
        "databases": [
            {
                "container": _container(d.container),
                "engine": d.engine,
                "databases": list(d.credentials.databases),
                "detected_by": d.detected_by,
            }
            for d in app.databases
        ],
        "config_files": [
            {"path": f.path, "archive_name": f.archive_name} for f in app.config_files
        ],
        "working_dir": app.working_dir,
    }


def from_json(app_id: str, data: dict[str, Any]) -> StoredApp:
    return StoredApp(
        app_id=app_id,
        containers=tuple(ContainerInfo(**c) for c in data.get("containers", [])),
        volumes=tuple(
            VolumeInfo(name=v["name"], mountpoint=v["mountpoint"], size_bytes=v.get("size_bytes"))
            for v in data.get("volumes", [])
        ),
        databases=tuple(
            StoredDatabase(
                container=ContainerInfo(**d["container"]),
                engine=d["engine"],
                databases=tuple(d.get("databases", ())),
                detected_by=d.get("detected_by", ""),
            )
            for d in data.get("databases", [])
        ),
        config_files=tuple(ConfigFile(**f) for f in data.get("config_files", [])),
        working_dir=data.get("working_dir"),
    )
