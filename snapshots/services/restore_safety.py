"""A restore's safety backup: when it is taken, that it covers what the
restore replaces, and taking it.

It is taken whenever the restore would replace data: the app has
containers, or a volume it swaps holds files, containers or not (an app
whose containers were removed still has its data in its volumes, and a
restore without a safety backup would lose it for good). It is a normal
backup of the app as discovery finds it, so a volume the restore swaps that
discovery does not find (neither labelled with the app nor mounted by one
of its containers) would not be in it: such a restore is refused before
anything is touched, unless no safety backup is asked for."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import docker.errors

from engine.inventory import AppInfo
from engine.progress import Progress, ProgressCallback
from engine.restore.plan import RestorePlan
from snapshots.locks import Lease
from snapshots.models import Run, Snapshot
from snapshots.runs import claim_run
from snapshots.services.backup import perform_backup, request_backup


def volumes_holding_data(client: docker.DockerClient, plan: RestorePlan) -> list[str]:
    """The volumes PLAN swaps that exist on this host and hold any file."""
    holding: list[str] = []
    for name in plan.raw_volumes:
        try:
            mountpoint = Path(client.volumes.get(name).attrs["Mountpoint"])
        except docker.errors.NotFound:
            continue  # created by the restore: nothing to lose
        if _has_entries(mountpoint):
            holding.append(name)
    return holding


def _has_entries(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:
        return False
    # Any other OSError (unreadable): raised, not taken for an empty volume.


def needs_safety_backup(app: AppInfo, holding: list[str]) -> bool:
    return bool(app.containers) or bool(holding)


def uncovered_volumes(app: AppInfo, holding: list[str]) -> list[str]:
    """Of HOLDING, those the safety backup (a backup of APP) would not hold."""
    backed_up = {v.name for v in app.volumes}
    return [name for name in holding if name not in backed_up]


def uncovered_message(app_id: str, uncovered: list[str]) -> str:
    return (
        f"restore of app {app_id} refused: it would replace the data of volumes "
        f"{', '.join(uncovered)}, which a safety backup of the app would not hold (no "
        f"container of the app mounts them and they have no com.docker.compose.project="
        f"{app_id} label); nothing was changed; to restore without a safety backup, pass "
        "backup_before_restore=false (CLI: --no-safety-backup)"
    )


def take_safety_backup(run: Run, progress: ProgressCallback, lease: Lease) -> Snapshot:
    """A normal full backup of the current state, marked pre-restore."""
    from snapshots.services.restore import RestoreRefused

    progress(Progress("safety backup"))
    safety_run = request_backup(run.app_id, purpose=Snapshot.Purpose.PRE_RESTORE)
    claimed = claim_run(str(safety_run.pk))
    if claimed is None or claimed.snapshot is None:
        raise RestoreRefused("could not start the safety backup")
    safety = perform_backup(claimed, claimed.snapshot, lease, progress)
    if safety.status != Snapshot.Status.COMPLETED:
        raise RestoreRefused(f"the safety backup failed ({safety.error}); nothing was changed")
    return safety
