"""containers.json: what recreating an app's containers on another Docker
host needs, recorded at backup time from `docker inspect`.

Per container: the image (reference and id), the Config fields a container
is made from (command, entrypoint, environment, user, working dir, labels,
ports, healthcheck, stop signal and timeout), its mounts (named volumes and
bind mounts), its networks with their aliases, its port bindings and
restart policy. Per network and volume: driver, options and labels.

The environment holds secrets (database passwords): this record is its own
archive member, so it is encrypted with the archive, and it is never copied
into backup.json, the Snapshot row, the API, a log line or an exception."""

from __future__ import annotations

import json
import logging
import tarfile
from typing import Any

import docker
import docker.errors

from engine.archive.layout import BACKUP_JSON, CONTAINERS_JSON
from engine.errors import ArchiveError
from engine.inventory import AppInfo
from engine.restore.plan import OpenStream

logger = logging.getLogger(__name__)

RECORD_VERSION = 1
MAX_RECORD_BYTES = 64 << 20  # far above any real app: a bound on what is read into memory

# The Config fields a container is created from again. Not Hostname: Compose
# leaves it to Docker (the container id), recorded only when it was set.
CONFIG_FIELDS = (
    "Cmd", "Entrypoint", "Env", "User", "WorkingDir", "Labels", "ExposedPorts",
    "Healthcheck", "StopSignal", "StopTimeout", "Tty", "OpenStdin", "Domainname",
)  # fmt: skip
# Not IpcMode, PidMode, VolumesFrom, Links: they may name the old host's container ids.
HOST_CONFIG_FIELDS = (
    "PortBindings", "RestartPolicy", "Tmpfs", "ExtraHosts", "ShmSize", "Init", "LogConfig",
    "CapAdd", "CapDrop", "Privileged", "SecurityOpt", "Sysctls", "Ulimits", "Devices",
    "GroupAdd", "Dns", "DnsSearch", "DnsOptions", "ReadonlyRootfs",
)  # fmt: skip
# Networks every engine has: joined by name, never created.
BUILTIN_NETWORKS = ("bridge", "host", "none")


def app_record(client: docker.DockerClient, app: AppInfo) -> dict[str, Any]:
    """The containers.json of APP, from the engine now. A container removed
    since discovery is left out (its backup.json entry still names it)."""
    containers: list[dict[str, Any]] = []
    network_names: set[str] = set()
    for info in app.containers:
        try:
            attrs = client.api.inspect_container(info.id)
        except docker.errors.NotFound:
            logger.info("container %s vanished before its record was taken", info.name)
            continue
        entry = _container(attrs, info.service, info.one_off)
        containers.append(entry)
        network_names.update(n["name"] for n in entry["networks"])
    return {
        "version": RECORD_VERSION,
        "app_id": app.app_id,
        "containers": containers,
        "networks": [_network(client, name) for name in sorted(network_names)],
        "volumes": [_volume(client, v.name) for v in app.volumes],
    }


def _container(attrs: dict[str, Any], service: str, one_off: bool) -> dict[str, Any]:
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    container_id = attrs.get("Id") or ""
    recorded = {key: config[key] for key in CONFIG_FIELDS if config.get(key) is not None}
    hostname = config.get("Hostname") or ""
    if hostname and not container_id.startswith(hostname):
        recorded["Hostname"] = hostname
    mounts = []
    for mount in attrs.get("Mounts") or []:
        kind = mount.get("Type")
        if kind == "volume" and mount.get("Name"):
            source = mount["Name"]
        elif kind == "bind":
            source = mount.get("Source") or ""
        else:
            continue  # tmpfs is in HostConfig.Tmpfs; anonymous volumes come from the image
        mounts.append({
            "type": kind, "source": source, "target": mount.get("Destination") or "",
            "read_only": not mount.get("RW", True),
        })  # fmt: skip
    networks = []
    for name, endpoint in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items():
        # The engine adds the container's short id as an alias: not the app's.
        aliases = [a for a in (endpoint or {}).get("Aliases") or [] if a != container_id[:12]]
        networks.append({"name": name, "aliases": aliases})
    return {
        "name": (attrs.get("Name") or "").lstrip("/"),
        "service": service,
        "one_off": one_off,
        "state": (attrs.get("State") or {}).get("Status", ""),
        "image": config.get("Image") or "",
        "image_id": attrs.get("Image") or "",
        "config": recorded,
        "host_config": {key: host[key] for key in HOST_CONFIG_FIELDS if host.get(key)},
        "network_mode": host.get("NetworkMode") or "",
        "mounts": mounts,
        "networks": networks,
    }


def _network(client: docker.DockerClient, name: str) -> dict[str, Any]:
    try:
        attrs = client.api.inspect_network(name)
    except docker.errors.NotFound:
        attrs = {}
    return {
        "name": name,
        "driver": attrs.get("Driver") or "bridge",
        "labels": dict(attrs.get("Labels") or {}),
        "options": dict(attrs.get("Options") or {}),
        "internal": bool(attrs.get("Internal")),
        "attachable": bool(attrs.get("Attachable")),
        "enable_ipv6": bool(attrs.get("EnableIPv6")),
    }


def _volume(client: docker.DockerClient, name: str) -> dict[str, Any]:
    try:
        attrs = client.api.inspect_volume(name)
    except docker.errors.NotFound:
        attrs = {}
    return {
        "name": name,
        "driver": attrs.get("Driver") or "local",
        "labels": dict(attrs.get("Labels") or {}),
        "options": dict(attrs.get("Options") or {}),
    }


def record_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode()


def read_app_record(open_stream: OpenStream) -> dict[str, Any] | None:
    """containers.json of an archive (it follows backup.json), or None for
    an archive made before it was recorded. Read without validation: the
    caller starts nothing made from it before the whole archive is checked."""
    with open_stream() as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.name == BACKUP_JSON:
                        continue
                    if member.name != CONTAINERS_JSON:
                        return None  # the second member, when there is one
                    if not member.isfile() or member.size > MAX_RECORD_BYTES:
                        raise ArchiveError(f"{CONTAINERS_JSON} is not a plausible file")
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise ArchiveError(f"{CONTAINERS_JSON} is not a regular file")
                    return _parse(extracted.read())
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveError(f"archive is unreadable: {exc}") from exc
    return None


def _parse(raw: bytes) -> dict[str, Any]:
    """The record, its shape checked. Messages name fields, never values."""
    try:
        record = json.loads(raw)
    except ValueError:
        raise ArchiveError(f"{CONTAINERS_JSON} is not valid JSON") from None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise ArchiveError(f"{CONTAINERS_JSON} is not a version {RECORD_VERSION} record")
    for key in ("containers", "networks", "volumes"):
        items = record.get(key)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ArchiveError(f"{CONTAINERS_JSON} is invalid: {key} is not a list of objects")
        for number, item in enumerate(items):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ArchiveError(f"{CONTAINERS_JSON} is invalid: {key}[{number}] has no name")
    for number, container in enumerate(record["containers"]):
        for key, kind in (("image", str), ("config", dict), ("host_config", dict),
                          ("mounts", list), ("networks", list)):  # fmt: skip
            if not isinstance(container.get(key), kind):
                raise ArchiveError(
                    f"{CONTAINERS_JSON} is invalid: containers[{number}].{key} is missing or "
                    f"not a {kind.__name__}"
                )
    return record
