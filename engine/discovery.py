"""What apps run on this Docker host, and what each is made of.

An app is a Compose project: the containers and volumes labelled
com.docker.compose.project=<app_id>, plus the named volumes its containers
mount, the compose files and `.env` its labels point to, and the databases
among its containers (engine.database_detection): by image, or by their
environment, the data directories in their volumes (read at the volume's
mountpoint, as backups read them) and the server processes they run."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePosixPath

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.models.volumes import Volume

from engine.database_detection import (
    DatabaseOverride,
    ServerBinaries,
    apply_overrides,
    detect_database,
    detect_from_signals,
    find_data_dirs,
    server_binary,
)
from engine.docker_client import container_file_reader
from engine.errors import AppNotFound, DockerUnavailable
from engine.inventory import (
    AppInfo,
    ConfigFile,
    ContainerInfo,
    DatabaseEngine,
    DatabaseInfo,
    DatabaseSuspect,
    DataDir,
    VolumeInfo,
)

log = logging.getLogger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
ENV_FILES_LABEL = "com.docker.compose.project.environment_file"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"

# A Compose project name, as `docker compose` accepts it.
_APP_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
# `<app>-init`, as a container_name or as Compose names service "init" (`<app>-init-1`).
_INIT_SUFFIX = re.compile(r"[-_]init([-_][0-9]+)?")
_FINISHED_STATES = ("exited", "dead")
# Volumes Docker created for a VOLUME without a name: a 64-hex id, no stable name to restore to.
_ANONYMOUS_VOLUME = re.compile(r"[0-9a-f]{64}")


def validate_app_id(app_id: object) -> str:
    """APP_ID if it is a valid Compose project name; AppNotFound otherwise,
    so nothing unchecked reaches a Docker filter."""
    if isinstance(app_id, str) and _APP_ID.fullmatch(app_id):
        return app_id
    shown = repr(app_id)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise AppNotFound(
        f"{shown} is not a valid app id: a Compose project name has lowercase letters, "
        "digits, '_' and '-', and starts with a letter or digit"
    )


def discover_apps(
    client: docker.DockerClient,
    excluded_projects: Iterable[str] = ("websoft9",),
    measure_sizes: bool = False,
) -> list[AppInfo]:
    """Every app on the host, sorted by app id, except EXCLUDED_PROJECTS
    (the platform's own stack is not an app to back up)."""
    containers, volumes = _labelled(client)
    return [
        _build_app(
            client, app_id, containers.get(app_id, []), volumes.get(app_id, []), measure_sizes
        )
        for app_id in _app_ids(set(containers) | set(volumes), excluded_projects)
    ]


def list_app_ids(
    client: docker.DockerClient, excluded_projects: Iterable[str] = ("websoft9",)
) -> list[str]:
    """The ids discover_apps would find, from two list calls only (no
    inspection of each container, as containers.list() does one by one):
    what a page listing the host's apps needs."""
    with _engine_errors():
        containers = client.api.containers(all=True, filters={"label": PROJECT_LABEL})
        volumes = client.api.volumes(filters={"label": PROJECT_LABEL}).get("Volumes") or []
    projects = {(item.get("Labels") or {}).get(PROJECT_LABEL, "") for item in containers + volumes}
    return _app_ids(projects - {""}, excluded_projects)


def _labelled(
    client: docker.DockerClient,
) -> tuple[dict[str, list[Container]], dict[str, list[Volume]]]:
    """The host's Compose-labelled containers and volumes, by project."""
    containers: dict[str, list[Container]] = {}
    volumes: dict[str, list[Volume]] = {}
    with _engine_errors():
        for container in client.containers.list(
            all=True, filters={"label": PROJECT_LABEL}, ignore_removed=True
        ):
            containers.setdefault(container.labels.get(PROJECT_LABEL, ""), []).append(container)
        for volume in client.volumes.list(filters={"label": PROJECT_LABEL}):
            labels = volume.attrs.get("Labels") or {}
            volumes.setdefault(labels.get(PROJECT_LABEL, ""), []).append(volume)
    return containers, volumes


def _app_ids(projects: set[str], excluded_projects: Iterable[str]) -> list[str]:
    excluded = set(excluded_projects)
    ids = []
    for app_id in sorted(projects):
        if app_id in excluded:
            continue
        if not _APP_ID.fullmatch(app_id):
            log.warning("skipping Compose project %r: not a valid project name", app_id)
            continue
        ids.append(app_id)
    return ids


def get_app(
    client: docker.DockerClient,
    app_id: str,
    measure_sizes: bool = False,
    overrides: Mapping[str, DatabaseOverride] | None = None,
) -> AppInfo:
    """The app APP_ID; AppNotFound when nothing on the host carries its label.
    OVERRIDES (by service name) change what database detection finds."""
    app_id = validate_app_id(app_id)
    label = f"{PROJECT_LABEL}={app_id}"
    with _engine_errors():
        containers = client.containers.list(all=True, filters={"label": label}, ignore_removed=True)
        volumes = client.volumes.list(filters={"label": label})
    if not containers and not volumes:
        raise AppNotFound(
            f"no app {app_id!r} on this Docker host: no container or volume has the label {label}"
        )
    app = _build_app(client, app_id, containers, volumes, measure_sizes, overrides)
    return apply_overrides(app, overrides) if overrides else app


def apparent_size(path: str) -> int:
    """Apparent size in bytes of the tree at PATH, as `du -sb` counts it:
    st_size of every entry (the directories too), symlinks not followed,
    hardlinked inodes once. Entries that vanish during the walk (a live
    volume) are skipped."""
    seen: set[tuple[int, int]] = set()
    total = 0
    pending = [path]
    while pending:
        current = pending.pop()
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            continue
        if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
        total += info.st_size
        if stat.S_ISDIR(info.st_mode):
            try:
                with os.scandir(current) as entries:
                    pending.extend(entry.path for entry in entries)
            except (FileNotFoundError, NotADirectoryError):
                continue
    return total


# -- Building one app -------------------------------------------------------------


def _build_app(
    client: docker.DockerClient,
    app_id: str,
    containers: list[Container],
    labelled_volumes: list[Volume],
    measure_sizes: bool,
    overrides: Mapping[str, DatabaseOverride] | None = None,
) -> AppInfo:
    overrides = overrides or {}
    containers = sorted(containers, key=lambda container: container.name)
    infos = [_container_info(app_id, container) for container in containers]
    volumes = _volumes(client, containers, labelled_volumes, measure_sizes)
    mountpoints = {volume.name: volume.mountpoint for volume in volumes}
    scanned: dict[str, list[tuple[str, DatabaseEngine, tuple[str, ...]]]] = {}
    databases: list[DatabaseInfo] = []
    data_dirs: list[DataDir] = []
    suspects: list[DatabaseSuspect] = []
    for container, info in zip(containers, infos, strict=True):
        override = overrides.get(info.service)
        env = _environment(container)
        # exec needs a running container; a stopped one keeps password_file.
        reader = container_file_reader(client, info.id) if info.state == "running" else None
        database = detect_database(
            info, env, reader, engine=override.engine if override is not None else None
        )
        dirs = [] if info.one_off else _data_dirs(container, info, mountpoints, scanned)
        data_dirs += dirs
        if database is None and not (override is not None and override.skip):
            found = detect_from_signals(
                info, env, dirs, functools.partial(_server_binaries, client, container), reader
            )
            database = found.database
            if database is not None:
                log.info("app %s: container %s: %s", app_id, info.name, database.detected_by)
            if found.suspect is not None:
                suspects.append(found.suspect)
                log.info("app %s: container %s is no database to dump: %s", app_id, info.name,
                         found.suspect.problem)  # fmt: skip
        if database is not None:
            databases.append(database)
    config_files, working_dir = _config_files(containers)
    return AppInfo(
        app_id=app_id,
        containers=tuple(infos),
        volumes=volumes,
        databases=tuple(databases),
        config_files=config_files,
        working_dir=working_dir,
        data_dirs=tuple(data_dirs),
        suspects=tuple(suspects),
    )


def _data_dirs(
    container: Container,
    info: ContainerInfo,
    mountpoints: dict[str, str],
    scanned: dict[str, list[tuple[str, DatabaseEngine, tuple[str, ...]]]],
) -> list[DataDir]:
    """The database data directories in the volumes CONTAINER mounts (of the
    app's volumes, read at their mountpoint here); each volume scanned once."""
    found: list[DataDir] = []
    for mount in container.attrs.get("Mounts") or []:
        name = mount.get("Name") or ""
        if mount.get("Type") != "volume" or name not in mountpoints:
            continue
        if name not in scanned:
            mountpoint = mountpoints[name]
            scanned[name] = find_data_dirs(mountpoint) if os.path.isdir(mountpoint) else []
        found += [
            DataDir(container=info, volume=name, path=path, engine=engine, markers=markers)
            for path, engine, markers in scanned[name]
        ]
    return found


def _server_binaries(client: docker.DockerClient, container: Container) -> ServerBinaries:
    """The database servers CONTAINER runs: its processes as `docker top`
    lists them (no exec, no shell needed in the image; only the binaries'
    names are kept, never their arguments); for a container that does not run
    or whose processes cannot be listed, its configured command."""
    state = (container.attrs.get("State") or {}).get("Status", "")
    if state in ("running", "paused"):
        try:
            top = client.api.top(container.id)
            titles = top["Titles"]
            column = titles.index("CMD" if "CMD" in titles else "COMMAND")
            names = {_binary_name(row[column]) for row in top["Processes"] or []}
            return ServerBinaries(found=tuple(sorted(n for n in names if n)), source="running")
        except (docker.errors.DockerException, requests.exceptions.RequestException, LookupError,
                TypeError, ValueError) as exc:  # fmt: skip
            log.info("container %s: cannot list its processes (%s); reading its command",
                     container.name, type(exc).__name__)  # fmt: skip
    attrs = container.attrs
    # The executable and its first argument (an entrypoint script's "postgres").
    words = [attrs.get("Path") or "", *(attrs.get("Args") or [])[:1]]
    names = {_binary_name(word) for word in words}
    return ServerBinaries(found=tuple(sorted(n for n in names if n)), source="command")


def _binary_name(command: str) -> str | None:
    """The server binary's name when COMMAND starts a database server."""
    if not isinstance(command, str) or server_binary(command) is None:
        return None
    return command.split(None, 1)[0].rsplit("/", 1)[-1].rstrip(":")


def _container_info(app_id: str, container: Container) -> ContainerInfo:
    attrs = container.attrs
    labels = container.labels
    name = container.name or attrs.get("Name", "").lstrip("/")
    service = labels.get(SERVICE_LABEL, "")
    state = (attrs.get("State") or {}).get("Status", "")
    return ContainerInfo(
        id=container.id or "",
        name=name,
        service=service,
        image=(attrs.get("Config") or {}).get("Image", ""),
        state=state,
        one_off=labels.get(ONEOFF_LABEL) == "True"
        or _is_finished_init(app_id, name, service, state),
    )


def _is_finished_init(app_id: str, name: str, service: str, state: str) -> bool:
    """An `<app>-init` container that has done its job: it seeds or migrates
    once, it is not part of what runs."""
    if state not in _FINISHED_STATES:
        return False
    if service in ("init", f"{app_id}-init"):
        return True
    return name.startswith(app_id) and bool(_INIT_SUFFIX.fullmatch(name[len(app_id) :]))


def _environment(container: Container) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in (container.attrs.get("Config") or {}).get("Env") or []:
        name, sep, value = entry.partition("=")
        if sep:
            env[name] = value
    return env


def _volumes(
    client: docker.DockerClient,
    containers: list[Container],
    labelled: list[Volume],
    measure_sizes: bool,
) -> tuple[VolumeInfo, ...]:
    attrs_by_name = {volume.name: volume.attrs for volume in labelled}
    for container in containers:
        for mount in container.attrs.get("Mounts") or []:
            name = mount.get("Name") or ""
            if mount.get("Type") != "volume" or not name or name in attrs_by_name:
                continue
            if _ANONYMOUS_VOLUME.fullmatch(name):
                continue
            try:
                with _engine_errors():
                    attrs_by_name[name] = client.volumes.get(name).attrs
            except docker.errors.NotFound:
                continue  # removed since the container was listed
    volumes = []
    for name in sorted(attrs_by_name):
        attrs = attrs_by_name[name]
        mountpoint = attrs.get("Mountpoint", "")
        volumes.append(
            VolumeInfo(
                name=name,
                mountpoint=mountpoint,
                labels=dict(attrs.get("Labels") or {}),
                size_bytes=_measure(name, mountpoint) if measure_sizes else None,
            )
        )
    return tuple(volumes)


def _measure(name: str, mountpoint: str) -> int | None:
    if not mountpoint or not os.path.isdir(mountpoint):
        # A worker not on the volume's host, or a driver without a local path.
        log.warning("volume %s: mountpoint %r is not readable here; size unknown", name, mountpoint)
        return None
    try:
        return apparent_size(mountpoint)
    except OSError as exc:
        # Unreadable here (permissions): better unknown than a wrong number.
        log.warning("volume %s: cannot measure %s: %s; size unknown", name, mountpoint, exc)
        return None


def _config_files(containers: list[Container]) -> tuple[tuple[ConfigFile, ...], str | None]:
    """The compose files, env files and `.env` the containers' labels point
    to, those readable here; and the project's working directory."""
    working_dir = next(
        (c.labels[WORKING_DIR_LABEL] for c in containers if c.labels.get(WORKING_DIR_LABEL)),
        None,
    )
    paths: list[str] = []
    for container in containers:
        for label in (CONFIG_FILES_LABEL, ENV_FILES_LABEL):
            paths += [p.strip() for p in container.labels.get(label, "").split(",") if p.strip()]
    if working_dir:
        paths.append(os.path.join(working_dir, ".env"))
    files: list[ConfigFile] = []
    seen: set[str] = set()
    taken: set[str] = set()
    for path in paths:
        if working_dir and not os.path.isabs(path):
            path = os.path.join(working_dir, path)
        path = os.path.normpath(path)
        if path in seen or not os.path.isabs(path) or not _readable_file(path):
            continue
        seen.add(path)
        archive_name = _unique_name(os.path.basename(path), taken)
        taken.add(archive_name)
        files.append(ConfigFile(path=path, archive_name=archive_name))
    return tuple(files), working_dir


def _readable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def _unique_name(name: str, taken: set[str]) -> str:
    """NAME, or `stem-2.suffix`, `stem-3.suffix`... when another config file
    already has it (two docker-compose.yml from different directories)."""
    if name not in taken:
        return name
    pure = PurePosixPath(name)
    stem, suffix = (pure.stem, pure.suffix) if not name.startswith(".") else (name, "")
    number = 2
    while f"{stem}-{number}{suffix}" in taken:
        number += 1
    return f"{stem}-{number}{suffix}"


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """A lost connection to the engine becomes DockerUnavailable, not a
    requests error from deep inside the Docker SDK."""
    try:
        yield
    except requests.exceptions.ConnectionError as exc:
        raise DockerUnavailable(
            f"lost the connection to the Docker engine: {type(exc).__name__}"
        ) from exc
