"""What an app is made of, as discovery finds it on a Docker host.

Plain dataclasses shared by discovery, the backup pipeline, database dumps and
restore. Secrets are `Secret`s, so printing an inventory leaks nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.secret import Secret

DatabaseEngine = Literal["mysql", "mariadb", "postgres", "mongo"]


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    service: str  # com.docker.compose.service
    image: str  # image reference as configured, e.g. "mariadb:10.11"
    state: str  # running, exited, paused, ...
    one_off: bool = False  # `<app>-init`-style containers, not the running state


@dataclass(frozen=True)
class VolumeInfo:
    name: str  # Docker volume name, e.g. wordpress_ab12c_wp_data
    mountpoint: str  # on the host, e.g. /var/lib/docker/volumes/<name>/_data
    labels: dict[str, str] = field(default_factory=dict)
    size_bytes: int | None = None  # apparent size; None when not measured


@dataclass(frozen=True)
class DatabaseCredentials:
    user: str
    password: Secret | None  # None: no password (trust auth, Mongo without auth)
    databases: tuple[str, ...] = ()  # databases named in the environment, if any
    # Path inside the container of a `*_FILE` secret (Docker secrets) the
    # password came from, or must come from when it could not be read yet.
    password_file: str | None = None


@dataclass(frozen=True)
class DatabaseInfo:
    container: ContainerInfo
    engine: DatabaseEngine
    credentials: DatabaseCredentials


@dataclass(frozen=True)
class ConfigFile:
    path: str  # absolute path on the host
    archive_name: str  # name under config/ in the archive, e.g. docker-compose.yml


@dataclass(frozen=True)
class AppInfo:
    app_id: str  # the Compose project name
    containers: tuple[ContainerInfo, ...]
    volumes: tuple[VolumeInfo, ...]
    databases: tuple[DatabaseInfo, ...]
    config_files: tuple[ConfigFile, ...]
    working_dir: str | None = None
