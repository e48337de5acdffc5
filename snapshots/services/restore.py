"""Restore services: request a restore (validated rows only) and run it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings

from engine.errors import EngineError
from snapshots.models import AppLock, Run, Snapshot


class RestoreRefused(EngineError):
    """The restore cannot start (snapshot not restorable, app busy); nothing changed."""


class SnapshotNotFound(RestoreRefused):
    pass


class AppBusy(RestoreRefused):
    pass


@dataclass(frozen=True)
class RestoreOptions:
    stop_app: bool = True
    restore_database: bool = True
    backup_before_restore: bool = True


def request_restore(app_id: str, backup_id: str, options: RestoreOptions) -> Run:
    """Create a pending restore run after the cheap checks: the snapshot exists,
    belongs to APP_ID and is completed, and the app is not busy."""
    snapshot = Snapshot.objects.filter(backup_id=backup_id, app_id=app_id).first()
    if snapshot is None:
        raise SnapshotNotFound(f"no snapshot {backup_id} of app {app_id}")
    if snapshot.status != Snapshot.Status.COMPLETED:
        raise RestoreRefused(
            f"snapshot {backup_id} is {snapshot.status}; only completed snapshots can be restored"
        )
    busy = (
        Run.objects.filter(
            app_id=app_id,
            operation__in=[Run.Operation.BACKUP, Run.Operation.RESTORE],
            state__in=[Run.State.PENDING, Run.State.RUNNING],
            operation=Run.Operation.RESTORE,
        ).exists()
        or AppLock.objects.filter(app_id=app_id).exists()
    )
    if busy:
        raise AppBusy(f"app {app_id} is busy with another backup or restore; try again later")
    return Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=app_id, snapshot=snapshot,
        host_id=settings.BACKUP_HOST_ID, options=asdict(options),
    )  # fmt: skip
