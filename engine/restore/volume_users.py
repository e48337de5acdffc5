"""Who mounts the volumes a restore swaps, and which of them it stops.

A volume's data is swapped by renaming directories: a container that runs
(or is paused, or restarting) keeps the directory it mounted, which after
the swap is the old data, deleted once the restore commits; it is left on
an empty, deleted directory. So every live container that mounts a swapped
volume must be stopped first, whatever its state:

- the app's own containers are stopped like the rest of the app (a paused
  one is unpaused, stopped, and after the restore started and paused again,
  as it was);
- a container of another app (or of no app), or a one-off container of
  this app (`docker compose run`: starting it again would rerun its
  command), is never stopped by the restore: the restore refuses before it
  touches anything, naming those containers. Stopping another app would be
  downtime nobody asked for, under a lock the restore does not hold (that
  app may be in its own backup); its operator stops it and restores again.

A database container whose data comes back from its dump, through the
server, is not stopped at all when none of its volumes is swapped
(databases_kept_running): the dump is loaded into the running server while
the rest of the app is down, which saves its shutdown, its start and its
wait until it accepts connections from the downtime.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

import docker

from engine.discovery import ONEOFF_LABEL, PROJECT_LABEL
from engine.errors import EngineError, brief
from engine.inventory import AppInfo, ContainerInfo, DatabaseInfo

logger = logging.getLogger(__name__)

# States in which a container holds its mounts.
LIVE_STATES = ("running", "paused", "restarting")


class VolumeInUse(EngineError):
    """A container the restore does not stop mounts a volume it would swap."""


def containers_to_stop(app: AppInfo) -> list[ContainerInfo]:
    """The app's containers a restore stops (and brings back afterwards):
    every live one but its one-offs."""
    return [c for c in app.containers if c.state in LIVE_STATES and not c.one_off]


def databases_kept_running(
    client: docker.DockerClient, databases: Iterable[DatabaseInfo], swapped: Collection[str]
) -> list[ContainerInfo]:
    """Of DATABASES (those whose dumps the restore loads), the containers it
    leaves running: running now (a paused server cannot take the load, a
    restarting one is not there to), one of the app's own (not a one-off),
    and mounting none of the SWAPPED volumes (its files change under it
    only through the server). Any doubt (the engine cannot say) stops it,
    as before."""
    kept: list[ContainerInfo] = []
    for db in databases:
        info = db.container
        if info.state != "running" or info.one_off:
            continue
        try:
            attrs = client.api.inspect_container(info.id)
        except Exception as exc:  # gone, refused, unreachable: stopped as before
            logger.info("database %s is stopped for the restore: %s", info.name, brief(exc))
            continue
        mounted = {m.get("Name") for m in attrs.get("Mounts") or [] if m.get("Type") == "volume"}
        state = attrs.get("State") or {}
        if (
            state.get("Status") == "running"
            and not state.get("Paused")
            and not mounted & set(swapped)
        ):
            kept.append(info)
    return kept


def foreign_users(
    client: docker.DockerClient, app: AppInfo, volumes: Iterable[str], own: Iterable[str]
) -> list[str]:
    """Each live container mounting one of VOLUMES that is not among OWN
    (ids the restore stops), as "name (whose it is, state) mounts volumes"."""
    own_ids = set(own)
    found: dict[str, str] = {}
    mounted: dict[str, list[str]] = {}
    for volume in volumes:
        listed = client.containers.list(all=True, filters={"volume": volume}, ignore_removed=True)
        for container in listed:
            if container.id in own_ids or container.status not in LIVE_STATES:
                continue
            project = container.labels.get(PROJECT_LABEL)
            if project == app.app_id and container.labels.get(ONEOFF_LABEL) == "True":
                what = f"a one-off container of app {project}"
            elif project == app.app_id:
                what = f"app {project}, started after the restore began"
            elif project:
                what = f"app {project}"
            else:
                what = "no Compose app"
            found[container.name] = f"{container.name} ({what}, {container.status})"
            mounted.setdefault(container.name, []).append(volume)
    return [f"{found[name]} mounts {', '.join(mounted[name])}" for name in sorted(found)]


def refuse_foreign_users(
    client: docker.DockerClient,
    app: AppInfo,
    volumes: Iterable[str],
    own: Iterable[str],
    changed: str = "nothing was changed",
) -> None:
    """Raise VolumeInUse naming the containers outside the restore that
    mount a volume it would swap (CHANGED: what the message says of the app)."""
    users = foreign_users(client, app, list(volumes), own)
    if users:
        raise VolumeInUse(
            f"restore of app {app.app_id} refused: a restore would swap volumes under "
            f"containers it does not stop, leaving them on an emptied directory: "
            f"{'; '.join(users)}. Stop them (docker stop), then restore again; {changed}"
        )
