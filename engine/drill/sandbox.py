"""The throwaway database server of a drill, and the removal of everything
a drill creates, found by its label (also what cleanup uses after a
SIGKILL, which no `finally` survives)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import docker
import docker.errors

from engine.errors import EngineError
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseEngine, DatabaseInfo
from engine.secret import Secret

logger = logging.getLogger(__name__)

LABEL = "backup-drill"  # value: the drill's id
# Where each engine keeps its data when the image declares no VOLUME.
DATA_DIRS: dict[str, str] = {
    "mysql": "/var/lib/mysql",
    "mariadb": "/var/lib/mysql",
    "postgres": "/var/lib/postgresql/data",
}


class DrillSetupError(EngineError):
    """The throwaway server could not be created or started."""


@dataclass(frozen=True)
class Limits:
    """Docker's relative weights for the sandbox (the worker itself runs
    niced like a backup): the drill yields CPU and I/O to the apps."""

    cpu_shares: int = 256  # default 1024
    blkio_weight: int = 100  # 10..1000, default 500 (ignored where unsupported)


def _environment(engine: str, user: str, password: str) -> dict[str, str]:
    if engine == "postgres":
        # POSTGRESQL_*: the bitnami images' names for the same settings.
        return {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": "postgres",
                "POSTGRESQL_USERNAME": user, "POSTGRESQL_PASSWORD": password,
                "POSTGRESQL_POSTGRES_PASSWORD": password}  # fmt: skip
    return {"MARIADB_ROOT_PASSWORD": password, "MYSQL_ROOT_PASSWORD": password}


def _data_dir(client: docker.DockerClient, image: str, engine: str) -> str:
    config = client.images.get(image).attrs.get("Config") or {}
    declared = sorted((config.get("Volumes") or {}).keys())
    if declared:
        return declared[0]
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    if engine == "postgres" and env.get("PGDATA"):
        return env["PGDATA"]
    return DATA_DIRS[engine]


@contextmanager
def sandbox(
    client: docker.DockerClient,
    drill_id: str,
    index: int,
    engine: DatabaseEngine,
    image: str,
    limits: Limits | None = None,
) -> Iterator[DatabaseInfo]:
    """A running server of ENGINE from IMAGE (an image id: never pulled),
    as a DatabaseInfo with the generated superuser; removed on exit, with
    its volume, whatever happened."""
    if engine not in DATA_DIRS:
        raise DrillSetupError(f"no drill for database engine {engine!r}")
    user = "postgres" if engine == "postgres" else "root"
    password = secrets.token_urlsafe(24)
    labels = {LABEL: drill_id}
    name = f"backup-drill-{drill_id[:13]}-{index}"
    try:
        try:
            data_dir = _data_dir(client, image, engine)
        except docker.errors.ImageNotFound:
            raise DrillSetupError(f"image {image} is not on this host (never pulled)") from None
        volume = client.volumes.create(name=name, labels=labels)
        container = client.containers.create(
            image,
            name=name,
            labels=labels,
            environment=_environment(engine, user, password),
            network_mode="none",  # nothing reaches it, it reaches nothing
            volumes={volume.name: {"bind": data_dir, "mode": "rw"}},
            cpu_shares=(limits or Limits()).cpu_shares,
            blkio_weight=(limits or Limits()).blkio_weight,
            detach=True,
        )
        container.start()
        yield DatabaseInfo(
            container=ContainerInfo(container.id, name, "drill", image, "running"),
            engine=engine,
            credentials=DatabaseCredentials(user, Secret(password)),
            detected_by=f"drill sandbox of image {image}",
        )
    except docker.errors.APIError as exc:
        raise DrillSetupError(f"the drill's database container could not start: {exc}") from None
    finally:
        remove_labelled(client, drill_id)


def remove_labelled(client: docker.DockerClient, drill_id: str | None = None) -> list[str]:
    """Remove the containers (with their anonymous volumes), volumes and
    networks labelled backup-drill (=DRILL_ID when given); return what went.
    Never raises: a removal that fails is logged and left for the next cleanup."""
    selector = {"label": LABEL if drill_id is None else f"{LABEL}={drill_id}"}
    removed: list[str] = []
    kinds = (
        ("container", lambda: client.containers.list(all=True, filters=selector),
         lambda o: o.remove(force=True, v=True)),
        ("volume", lambda: client.volumes.list(filters=selector), lambda o: o.remove(force=True)),
        ("network", lambda: client.networks.list(filters=selector), lambda o: o.remove()),
    )  # fmt: skip
    for kind, listing, remove in kinds:
        try:
            found = listing()
        except docker.errors.APIError as exc:
            logger.warning("cannot list drill %ss: %s", kind, exc)
            continue
        for obj in found:
            try:
                remove(obj)
                removed.append(f"{kind} {obj.name}")
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                logger.warning("cannot remove drill %s %s: %s", kind, obj.name, exc)
    return removed


def kill_labelled(client: docker.DockerClient, drill_id: str) -> None:
    """Kill the running containers of DRILL_ID (the exec a drill waits on ends
    with them); their removal is left to the sandbox's own exit, so two
    removals never race. Never raises."""
    try:
        found = client.containers.list(filters={"label": f"{LABEL}={drill_id}"})
    except docker.errors.APIError as exc:
        logger.warning("cannot list drill containers: %s", exc)
        return
    for container in found:
        try:
            container.kill()
        except docker.errors.APIError as exc:  # gone or stopped already: nothing to stop
            logger.info("drill container %s not killed: %s", container.name, exc)


def labelled_drills(client: docker.DockerClient) -> dict[str, float]:
    """The drill ids that have something labelled on this host, each with
    the age in seconds of its oldest object (0 when Docker does not say)."""
    selector = {"label": LABEL}
    ages: dict[str, float] = {}
    now = time.time()
    for obj in [
        *client.containers.list(all=True, filters=selector),
        *client.volumes.list(filters=selector),
        *client.networks.list(filters=selector),
    ]:
        labels = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels") or {}
        if labels.get(LABEL):
            created = _created(obj.attrs)
            age = now - created if created else 0.0
            ages[labels[LABEL]] = max(ages.get(labels[LABEL], 0.0), age)
    return ages


def _created(attrs: dict) -> float | None:
    """Docker's creation time of an object (RFC 3339 with nanoseconds), as epoch."""
    value = attrs.get("Created") or attrs.get("CreatedAt")
    if not isinstance(value, str):
        return float(value) if isinstance(value, int | float) else None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?", value)
    if match is None:
        return None
    zone = match.group(2) or "Z"
    stamp = match.group(1) + ("+00:00" if zone == "Z" else zone)
    return datetime.fromisoformat(stamp).timestamp()
