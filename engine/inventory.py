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
    # Why this container is taken for a database, e.g. "image postgres:15" or
    # "detected postgres from env POSTGRES_PASSWORD, PG_VERSION in volume shop_db,
    # binary postgres (running)".
    detected_by: str = field(default="", compare=False)


@dataclass(frozen=True)
class DataDir:
    """A directory in one of a container's volumes that looks like a
    database server's data directory (engine.database_detection)."""

    container: ContainerInfo  # a container that mounts the volume
    volume: str
    path: str  # inside the volume, "" for its root
    engine: DatabaseEngine  # mysql stands for the MySQL family when nothing says MariaDB
    markers: tuple[str, ...]  # e.g. ("PG_VERSION",), ("aria_log_control", "ibdata1", "mysql/")


@dataclass(frozen=True)
class DatabaseSuspect:
    """A container that shows signs of a database server but is not taken for
    one: the signals are too few or disagree."""

    container: ContainerInfo
    engine: DatabaseEngine | None  # the likeliest engine, None when they disagree
    evidence: tuple[str, ...]  # e.g. ("PG_VERSION in volume shop_db",)
    problem: str  # why that is not enough
    running_server: bool = False  # a server process of an engine runs in it


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
    # What the containers' volumes and signals say beyond `databases`: the
    # backup warns when a live data directory gets no dump.
    data_dirs: tuple[DataDir, ...] = ()
    suspects: tuple[DatabaseSuspect, ...] = ()
