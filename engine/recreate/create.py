"""Make an app's networks, named volumes and containers on a Docker host
where it has none, from its containers.json (engine.recreate.record): a
migration's first step. The containers are created, not started; the
restore fills the volumes, loads the databases and starts them.

Checked before anything is made: every image is on this host (never
pulled: an image missing is a refusal naming it), every network that is not
the app's own exists, no volume of the record exists here already. Any
failure after that removes all this made (Recreated.remove), so nothing
half-made is left.

Bind mounts of host paths are made with the Mounts API, so the engine
itself refuses a source path missing on this host (the worker may not see
the host's paths), and that becomes a refusal naming the path: a backup
holds named volumes and the compose files, never other host directories,
and an empty directory in place of a certificate or config directory would
start the app wrong without a word."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests

from engine.discovery import PROJECT_LABEL
from engine.errors import EngineError
from engine.recreate.record import BUILTIN_NETWORKS

logger = logging.getLogger(__name__)


class RecreateRefused(EngineError):
    """The app cannot be recreated here; nothing was created (or all of it removed)."""


@dataclass
class Recreated:
    """What recreate_app made, in the order made: what a failure removes."""

    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)  # ids
    container_names: list[str] = field(default_factory=list)
    # Recorded state by container name (running on the old host: started here).
    states: dict[str, str] = field(default_factory=dict)

    def remove(self, client: docker.DockerClient) -> list[str]:
        """Remove everything made, containers first (with their anonymous
        volumes). Never raises: returns what could not be removed (and logs it)."""
        left: list[str] = []
        for container_id in reversed(self.containers):
            left += _removed(
                f"container {container_id[:12]}",
                lambda c=container_id: client.api.remove_container(c, v=True, force=True),
            )
        for name in reversed(self.volumes):
            left += _removed(f"volume {name}", lambda n=name: client.api.remove_volume(n))
        for name in reversed(self.networks):
            left += _removed(f"network {name}", lambda n=name: client.api.remove_network(n))
        self.containers, self.volumes, self.networks = [], [], []
        return left


def _removed(what: str, remove: Any) -> list[str]:
    try:
        remove()
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        logger.warning("%s made by a migration's restore left: %s", what, type(exc).__name__)
        return [what]
    return []


def planned_names(app_id: str, record: dict[str, Any]) -> dict[str, list[str]]:
    """What recreate_app may make from RECORD, by kind: for the run's journal,
    written before anything is made."""
    return {
        "containers": [c["name"] for c in record["containers"]],
        "volumes": [v["name"] for v in record["volumes"]],
        "networks": [
            n["name"] for n in record["networks"]
            if (n.get("labels") or {}).get(PROJECT_LABEL) == app_id
        ],
    }  # fmt: skip


def remove_planned(
    client: docker.DockerClient, app_id: str, names: dict[str, list[str]]
) -> tuple[list[str], list[str]]:
    """(removed, not removed) of NAMES (planned_names) after a crash: only
    what carries APP_ID's project label, which nothing of the app had here
    before the recreate (else it is not made: a restore of an app present)."""
    made = Recreated()
    for name in names.get("containers", []):
        found = client.api.containers(all=True, filters={"name": name})
        made.containers += [
            c["Id"] for c in found
            if name in [n.lstrip("/") for n in c.get("Names") or []]
            and (c.get("Labels") or {}).get(PROJECT_LABEL) == app_id
        ]  # fmt: skip
    for name in names.get("volumes", []):
        with contextlib.suppress(docker.errors.NotFound):
            if (client.api.inspect_volume(name).get("Labels") or {}).get(PROJECT_LABEL) == app_id:
                made.volumes.append(name)
    for name in names.get("networks", []):
        for network in client.api.networks(names=[name]):
            labels = network.get("Labels") or {}
            if network.get("Name") == name and labels.get(PROJECT_LABEL) == app_id:
                made.networks.append(name)
    what = (
        [f"container {c[:12]}" for c in made.containers]
        + [f"volume {v}" for v in made.volumes]
        + [f"network {n}" for n in made.networks]
    )
    left = made.remove(client)
    return [w for w in what if w not in left], left


def recreate_app(client: docker.DockerClient, app_id: str, record: dict[str, Any]) -> Recreated:
    """Create RECORD's networks, volumes and containers (not started) for
    APP_ID on CLIENT's engine. RecreateRefused (nothing left) when that is
    not possible; any other failure also removes what was made first."""
    containers = record["containers"]
    if not containers:
        raise RecreateRefused(f"the backup of app {app_id} records no container to recreate")
    _refuse_missing_images(client, app_id, containers)
    own_networks = _refuse_missing_networks(client, app_id, record)
    _refuse_existing_volumes(client, app_id, record)
    made = Recreated()
    try:
        for network in record["networks"]:
            if network["name"] in own_networks:
                _create_network(client, network)
                made.networks.append(network["name"])
        for volume in record["volumes"]:
            client.api.create_volume(
                name=volume["name"], driver=volume.get("driver") or "local",
                driver_opts=volume.get("options") or None, labels=volume.get("labels") or None,
            )  # fmt: skip
            made.volumes.append(volume["name"])
        for container in containers:
            container_id = _create_container(client, app_id, container)
            made.containers.append(container_id)
            made.container_names.append(container["name"])
            made.states[container["name"]] = str(container.get("state") or "")
    except BaseException:
        left = made.remove(client)
        if left:
            logger.error("app %s: a failed recreate left %s", app_id, ", ".join(left))
        raise
    return made


def _refuse_missing_images(
    client: docker.DockerClient, app_id: str, containers: list[dict[str, Any]]
) -> None:
    missing: list[str] = []
    for container in containers:
        image = container["image"]
        try:
            client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            if image not in missing:
                missing.append(image)
    if missing:
        raise RecreateRefused(
            f"app {app_id} cannot be recreated on this host: image(s) {', '.join(missing)} "
            "missing here (images are never pulled: load or pull them on this host first); "
            "nothing was created"
        )


def _refuse_missing_networks(
    client: docker.DockerClient, app_id: str, record: dict[str, Any]
) -> set[str]:
    """The app's own networks to create; RecreateRefused when one of them
    exists here already or another network its containers join is missing."""
    own: set[str] = set()
    missing: list[str] = []
    taken: list[str] = []
    for network in record["networks"]:
        name = network["name"]
        if name in BUILTIN_NETWORKS:
            continue
        # The engine's name filter matches parts of names: compared exactly here.
        exists = any(n.get("Name") == name for n in client.api.networks(names=[name]))
        if (network.get("labels") or {}).get(PROJECT_LABEL) == app_id:
            if exists:
                taken.append(name)
            own.add(name)
        elif not exists:
            missing.append(name)
    if missing:
        raise RecreateRefused(
            f"app {app_id} cannot be recreated on this host: its containers join network(s) "
            f"{', '.join(missing)}, not the app's own and missing here (create them first); "
            "nothing was created"
        )
    if taken:
        raise RecreateRefused(
            f"app {app_id} cannot be recreated on this host: network(s) {', '.join(taken)} "
            "exist here already (left by an earlier install?); remove them first; nothing "
            "was created"
        )
    return own


def _refuse_existing_volumes(
    client: docker.DockerClient, app_id: str, record: dict[str, Any]
) -> None:
    """A volume of the record that exists here holds someone's data: never reused."""
    taken = []
    for volume in record["volumes"]:
        try:
            client.api.inspect_volume(volume["name"])
            taken.append(volume["name"])
        except docker.errors.NotFound:
            pass
    if taken:
        raise RecreateRefused(
            f"app {app_id} cannot be recreated on this host: volume(s) {', '.join(taken)} "
            "exist here already without the app's containers; remove or rename them first; "
            "nothing was created"
        )


def _create_network(client: docker.DockerClient, network: dict[str, Any]) -> None:
    # No IPAM: the old host's subnet may be taken here; the engine picks one.
    client.api.create_network(
        network["name"], driver=network.get("driver") or "bridge",
        options=network.get("options") or None, labels=network.get("labels") or None,
        internal=bool(network.get("internal")), attachable=bool(network.get("attachable")),
        enable_ipv6=bool(network.get("enable_ipv6")), check_duplicate=True,
    )  # fmt: skip


def _create_container(client: docker.DockerClient, app_id: str, container: dict[str, Any]) -> str:
    """Create one container from its record; its id. The first network is
    joined at create (API 1.41 takes one), the others right after."""
    name = container["name"]
    networks = container["networks"]
    mode = container.get("network_mode") or ""
    if mode.startswith(("container:", "service:")):
        raise RecreateRefused(
            f"container {name} of app {app_id} shares another container's network "
            f"(network_mode {mode.split(':', 1)[0]}): not recreated by a restore; nothing is left"
        )
    first = networks[0] if networks else None
    host_config: dict[str, Any] = dict(container["host_config"])
    host_config["Mounts"] = [
        {"Type": m["type"], "Source": m["source"], "Target": m["target"],
         "ReadOnly": bool(m.get("read_only"))}
        for m in container["mounts"]
    ]  # fmt: skip
    host_config["NetworkMode"] = first["name"] if first else (mode or "default")
    config: dict[str, Any] = dict(container["config"])
    config |= {"Image": container["image"], "HostConfig": host_config}
    if first is not None and first["name"] not in BUILTIN_NETWORKS:
        config["NetworkingConfig"] = {
            "EndpointsConfig": {first["name"]: {"Aliases": list(first.get("aliases") or [])}}
        }
    try:
        created = client.api.create_container_from_config(config, name=name)
    except docker.errors.APIError as exc:
        raise _create_refused(app_id, name, container, exc) from None
    container_id: str = created["Id"]
    try:
        for network in networks[1:]:
            client.api.connect_container_to_network(
                container_id, network["name"], aliases=list(network.get("aliases") or []) or None
            )
    except BaseException:
        client.api.remove_container(container_id, v=True, force=True)
        raise
    return container_id


def _create_refused(
    app_id: str, name: str, container: dict[str, Any], exc: docker.errors.APIError
) -> EngineError:
    """The engine's refusal, in words; never the values of the container's
    environment (an engine message may quote what it refused)."""
    text = str(exc.explanation or exc)
    if "bind source path does not exist" in text:
        paths = [m["source"] for m in container["mounts"] if m["type"] == "bind"]
        missing = [p for p in paths if p in text] or paths
        return RecreateRefused(
            f"container {name} of app {app_id} bind-mounts host path(s) {', '.join(missing)}, "
            "missing on this host: a backup holds the named volumes and compose files, not "
            "other host directories; copy them here first; nothing is left"
        )
    for entry in container["config"].get("Env") or []:
        value = str(entry).partition("=")[2]
        if len(value) >= 3:
            text = text.replace(value, "***")
    return EngineError(f"container {name} of app {app_id} could not be created: {text[:300]}")
