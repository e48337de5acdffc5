"""What users (API, admin) do to snapshots: start a backup, verify, restore,
delete. Long work is queued as a Celery task whose id is the run's id."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError

from backup_project.celery import app as celery_app
from engine.discovery import get_app
from engine.docker_client import connect
from engine.errors import EngineError, ObjectNotFound
from engine.incremental.index import remove_index
from snapshots.models import Run, Snapshot
from snapshots.services.backup import request_backup
from snapshots.services.offsite_recovery import abort_uploads
from snapshots.services.restore import RestoreOptions, request_restore
from snapshots.services.verify import request_verify, run_verify
from snapshots.storage_locations import get_storage

logger = logging.getLogger(__name__)

BACKUP_TASK = "snapshots.create_backup"
VERIFY_TASK = "snapshots.verify_snapshot"
RESTORE_TASK = "snapshots.restore_backup"
# A run that is still going owns its snapshot: deleting it would pull the
# archive from under a backup, a verification or a restore.
_ACTIVE = (Run.State.PENDING, Run.State.RUNNING)


class SnapshotInUse(EngineError):
    """The snapshot cannot be deleted now; nothing was changed."""

    def __init__(self, message: str, children: list[str] | None = None) -> None:
        super().__init__(message)
        self.children = children or []


class QueueUnavailable(EngineError):
    """The task could not be queued (broker down); the run was marked failed."""


@dataclass(frozen=True)
class DeletedSnapshot:
    backup_id: str
    app_id: str
    freed_bytes: int
    removed: list[str]  # storage keys removed (archive, sidecar)


def task_queue() -> str:
    """The queue of this Docker host's worker (tests point it elsewhere)."""
    return settings.BACKUP_TASK_QUEUE or f"host.{settings.BACKUP_HOST_ID}"


def _enqueue(task_name: str, run: Run) -> None:
    """Send RUN's task once the rows are committed: a worker must never get
    a run id it cannot see yet."""

    def send() -> None:
        try:
            celery_app.send_task(
                task_name, args=[str(run.pk)], task_id=str(run.pk), queue=task_queue()
            )
        except Exception as exc:  # kombu raises many types for "no broker"
            # The type only: a broker error's text may carry the broker URL.
            logger.error("could not queue %s for run %s: %s", task_name, run.pk, type(exc).__name__)
            reason = f"could not queue the task ({type(exc).__name__}); is the broker running?"
            Run.objects.filter(pk=run.pk).update(state=Run.State.FAILED, error=reason)
            if run.snapshot_id and run.operation == Run.Operation.BACKUP:
                Snapshot.objects.filter(pk=run.snapshot_id).update(
                    status=Snapshot.Status.FAILED, error=reason
                )
            raise QueueUnavailable(reason) from exc

    transaction.on_commit(send)


def start_backup(
    app_id: str, *, encrypt: bool | None = None, storage_location: str = "local",
    backup_type: str = "full",
) -> Run:  # fmt: skip
    """Queue a backup of APP_ID (BACKUP_TYPE: full, or incremental when its
    chain allows). The app must exist on this host now: a typo gets an
    immediate answer, not a failed task later."""
    client = connect(settings.DOCKER_HOST)
    try:
        get_app(client, app_id)
    finally:
        client.close()
    with transaction.atomic():
        run = request_backup(
            app_id, encrypt=encrypt, storage_location=storage_location, backup_type=backup_type
        )
        _enqueue(BACKUP_TASK, run)
    return run


def verify_now(snapshot: Snapshot) -> Run:
    """Quick verification (SHA-256 of the stored bytes against the row and the
    sidecar), in this process; the run records the report."""
    run = request_verify(snapshot, deep=False)
    return run_verify(str(run.pk))


def start_deep_verify(snapshot: Snapshot) -> Run:
    with transaction.atomic():
        run = request_verify(snapshot, deep=True)
        _enqueue(VERIFY_TASK, run)
    return run


def start_restore(app_id: str, backup_id: str, options: RestoreOptions) -> Run:
    with transaction.atomic():
        run = request_restore(app_id, backup_id, options)
        _enqueue(RESTORE_TASK, run)
    return run


def delete_snapshot(snapshot: Snapshot) -> DeletedSnapshot:
    """Delete SNAPSHOT's archive, its sidecar and its row.

    Refused (SnapshotInUse, nothing changed) while another snapshot depends on
    it or a run still uses it. The row goes inside a transaction that the file
    removal joins: if removing a file fails, the row stays and says where the
    file is; a file already gone (removed by hand) is not an error."""
    with transaction.atomic():
        locked = Snapshot.objects.select_for_update().filter(pk=snapshot.pk).first()
        if locked is None:
            raise SnapshotInUse(f"snapshot {snapshot.backup_id} was already deleted")
        _refuse_if_in_use(locked)
        abort_uploads(locked.pk)  # open multipart uploads of its off-site copies
        try:
            locked.delete()
        except ProtectedError:  # a child appeared since the check
            _refuse_if_in_use(locked)
            raise
        freed, removed = _remove_files(locked)
    try:  # its index, when this process runs on the host that made it
        remove_index(settings.BACKUP_INDEX_DIR, locked.app_id, locked.backup_id)
    except OSError as exc:  # a leftover index names no snapshot: harmless
        logger.warning("snapshot %s: its index was not removed: %s", locked.backup_id, exc)
    logger.info("deleted snapshot %s of %s (%d bytes)", locked.backup_id, locked.app_id, freed)
    return DeletedSnapshot(locked.backup_id, locked.app_id, freed, removed)


def _refuse_if_in_use(snapshot: Snapshot) -> None:
    children = list(snapshot.children.values_list("backup_id", flat=True))
    if children:
        raise SnapshotInUse(
            f"snapshot {snapshot.backup_id} cannot be deleted: {len(children)} snapshot(s) "
            f"depend on it ({', '.join(children[:5])}); delete those first",
            children,
        )
    active = snapshot.runs.filter(state__in=_ACTIVE).values_list("operation", flat=True).first()
    if active is not None:
        raise SnapshotInUse(
            f"snapshot {snapshot.backup_id} cannot be deleted while a {active} of it is "
            "pending or running"
        )


def _remove_files(snapshot: Snapshot) -> tuple[int, list[str]]:
    if not snapshot.storage_key:
        return 0, []  # a failed backup never stored anything
    # `local+s3` and `s3`: every copy, local and off-site (storage.copies).
    storage = get_storage(snapshot.storage_location)
    freed = 0
    removed = []
    for key in (snapshot.storage_key, f"{snapshot.storage_key}.sha256"):
        try:
            size = storage.stat(key).size
            storage.delete(key)
        except ObjectNotFound:
            continue
        freed += size
        removed.append(key)
    return freed, removed
