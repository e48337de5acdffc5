"""A restore onto a host where the app has nothing (no container, no
volume: a migration with target_host_id, or an app uninstalled here): its
networks, volumes and containers are first made from the snapshot's
containers.json (engine.recreate), then the normal restore fills them and
starts the app. A failure anywhere removes all that was made.

An app with anything left on this host is restored as before, unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker

from engine import steps
from engine.discovery import get_app
from engine.errors import AppNotFound
from engine.inventory import AppInfo, ContainerInfo
from engine.recreate.create import Recreated, planned_names, recreate_app
from engine.recreate.record import read_app_record
from engine.restore.orchestrate import RestoreFailed
from engine.restore.plan import OpenStream
from engine.restore.volume_users import LIVE_STATES
from engine.steps import StepGuard
from snapshots.services.restore_archive import read_or_refuse

REMOVED = "the containers, volumes and networks this restore created were removed"


def _nothing_here(app_id: str) -> AppInfo:
    return AppInfo(app_id=app_id, containers=(), volumes=(), databases=(), config_files=())


@contextmanager
def app_on_this_host(
    client: docker.DockerClient,
    app_id: str,
    backup_id: str,
    open_tar: OpenStream,
    result: dict[str, Any],
    guard: StepGuard,
) -> Iterator[tuple[AppInfo, bool]]:
    """(the app as the restore sees it, whether it was recreated here).
    With nothing of the app here and a backup recording its containers, they
    are made first (created, not started: the restore starts those that ran
    on the old host); any exception out of the block removes them all and
    says so in the error."""
    try:
        found: AppInfo | None = get_app(client, app_id)
    except AppNotFound:
        found = None
    if found is not None:  # today's restore, unchanged
        yield found, False
        return
    record = _record(backup_id, open_tar)
    if record is None or not record["containers"]:
        # A backup from before containers.json (or of volumes only): as before,
        # the volumes are recreated and the operator starts the containers.
        yield _nothing_here(app_id), False
        return
    # Journalled first: a recovery after a crash removes what was made.
    guard(steps.RECREATE, planned_names(app_id, record))
    made = recreate_app(client, app_id, record)
    result["recreated"] = {
        "containers": list(made.container_names), "volumes": list(made.volumes),
        "networks": list(made.networks),
    }  # fmt: skip
    try:
        yield _as_it_ran(get_app(client, app_id), made), True
    except BaseException as exc:
        _undo(client, made, exc, result)
        raise


def _record(backup_id: str, open_tar: OpenStream) -> dict[str, Any] | None:
    return read_or_refuse(backup_id, lambda: read_app_record(open_tar))


def _as_it_ran(app: AppInfo, made: Recreated) -> AppInfo:
    """APP with each container's state as on the old host: one that ran is
    taken for running, so the restore's stop (of a created container: a no-op)
    and start bring it up and check it stays up; the others stay created."""

    def state(info: ContainerInfo) -> ContainerInfo:
        ran = made.states.get(info.name) in LIVE_STATES and not info.one_off
        return dataclasses.replace(info, state="running") if ran else info

    return dataclasses.replace(
        app,
        containers=tuple(state(c) for c in app.containers),
        databases=tuple(
            dataclasses.replace(d, container=state(d.container)) for d in app.databases
        ),
    )


def _undo(
    client: docker.DockerClient, made: Recreated, exc: BaseException, result: dict[str, Any]
) -> None:
    left = made.remove(client)
    result["recreated"] = None
    note = f"NOT removed (created by this restore): {', '.join(left)}" if left else REMOVED
    if isinstance(exc, RestoreFailed):
        if not left:
            # Nothing of the app is left here: no rollback is left undone either.
            exc.not_rolled_back = [i for i in exc.not_rolled_back if i not in exc.left_undone]
            exc.rolled_back.append(REMOVED)
        else:
            exc.not_rolled_back.append(note)
        exc.args = (f"{exc}; {note}",)
    else:
        exc.add_note(note)
