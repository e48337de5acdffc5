"""What users (API, admin) do to snapshots: start a backup, verify, restore,
delete. Long work is queued as a Celery task whose id is the run's id."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError

from backup_project.celery import app as celery_app
from engine.errors import AppNotFound, EngineError, ObjectNotFound
from engine.incremental.index import remove_index
from fleet.routing import host_queue, route_app, route_bound, route_to_host
from snapshots.models import Run, Snapshot
from snapshots.selectors import wait_for_run
from snapshots.services.backup import request_backup
from snapshots.services.offsite_recovery import abort_uploads
from snapshots.services.restore import RestoreOptions, RestoreRefused, request_restore
from snapshots.services.verify import refuse_unless_verifiable, request_verify, run_verify
from snapshots.storage_locations import LOCAL, get_storage, keeps_local_copy

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


def task_queue(host_id: str | None = None) -> str:
    """The queue of HOST_ID's worker (default: this host's). BACKUP_TASK_QUEUE,
    when set, takes everything (one queue for every worker; tests)."""
    return settings.BACKUP_TASK_QUEUE or host_queue(host_id or settings.BACKUP_HOST_ID)


def shared_queue() -> str:
    """The queue every worker consumes besides its host's: work that can run
    anywhere (a verify reading only off-site copies, notifications)."""
    return settings.BACKUP_TASK_QUEUE or settings.CELERY_TASK_DEFAULT_QUEUE


def _enqueue(task_name: str, run: Run, queue: str | None = None) -> None:
    """Send RUN's task (to QUEUE, default its host's) once the rows are
    committed: a worker must never get a run id it cannot see yet."""

    def send() -> None:
        try:
            celery_app.send_task(
                task_name, args=[str(run.pk)], task_id=str(run.pk),
                queue=queue or task_queue(run.host_id),
            )  # fmt: skip
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
    app_id: str,
    *,
    encrypt: bool | None = None,
    storage_location: str = "local",
    backup_type: str = "full",
    host_id: str | None = None,
) -> Run:
    """Queue a backup of APP_ID (BACKUP_TYPE: full, or incremental when its
    chain allows) on the queue of the host it is on, by the stored inventory:
    a typo, an app on two hosts without HOST_ID or an offline host get an
    immediate answer, not a task that never runs."""
    target = route_app(app_id, host_id)
    with transaction.atomic():
        run = request_backup(
            app_id,
            encrypt=encrypt,
            storage_location=storage_location,
            backup_type=backup_type,
            host_id=target,
        )
        _enqueue(BACKUP_TASK, run)
    return run


def verify_now(snapshot: Snapshot, wait_seconds: float | None = None) -> Run:
    """Quick verification (SHA-256 of the stored bytes against the row and the
    sidecar); the run records the report. It needs no Docker engine, only
    the archive's bytes, so it runs in this process wherever they can be
    read here: off-site storage (S3, which this process also serves
    downloads from) or a local disk that holds the file (this host's, the
    web beside its worker). A local archive that is not here is on the disk
    of the host that made it: that host's worker verifies it (its queue;
    refused at once when it is offline), and this waits up to WAIT_SECONDS
    (default BACKUP_API_WAIT_SECONDS) for the report; the run is returned
    still pending or running when it takes longer."""
    host = _holding_host(snapshot)
    if host is None:
        run = request_verify(snapshot, deep=False)
        return run_verify(str(run.pk))
    refuse_unless_verifiable(snapshot)
    host = route_bound(host)
    with transaction.atomic():
        run = request_verify(snapshot, deep=False, host_id=host)
        _enqueue(VERIFY_TASK, run)
    wait = settings.BACKUP_API_WAIT_SECONDS if wait_seconds is None else wait_seconds
    return wait_for_run(str(run.pk), wait)


def _holding_host(snapshot: Snapshot) -> str | None:
    """The other host whose local disk alone holds SNAPSHOT's archive; None
    when this process can read it (quick verify here reports a local file
    of another host "missing" otherwise)."""
    location = snapshot.storage_location
    if not keeps_local_copy(location) or snapshot.host_id in ("", settings.BACKUP_HOST_ID):
        return None
    if not snapshot.storage_key:
        return None  # a row with no archive: the verification says so, here
    try:
        get_storage(LOCAL).stat(snapshot.storage_key)
    except ObjectNotFound:
        return snapshot.host_id
    except EngineError:
        return None  # an unreadable path: the verification reports it
    return None  # that host's disk is mounted here too


def start_deep_verify(snapshot: Snapshot) -> Run:
    """On the host that made SNAPSHOT when its local disk holds a copy
    (refused at once when that host is offline); a snapshot kept only
    off-site (S3) on the shared queue: any worker reads it, whatever host
    made it, and the run is its claimer's."""
    refuse_unless_verifiable(snapshot)
    if not keeps_local_copy(snapshot.storage_location):
        with transaction.atomic():
            run = request_verify(snapshot, deep=True, host_id=snapshot.host_id)
            _enqueue(VERIFY_TASK, run, queue=shared_queue())
        return run
    host = route_bound(snapshot.host_id)
    with transaction.atomic():
        run = request_verify(snapshot, deep=True, host_id=host)
        _enqueue(VERIFY_TASK, run)
    return run


def start_restore(
    app_id: str, backup_id: str, options: RestoreOptions, host_id: str | None = None
) -> Run:
    """Queue the restore on the host the app is on (HOST_ID when given)."""
    target = _restore_host(app_id, backup_id, host_id)
    with transaction.atomic():
        run = request_restore(app_id, backup_id, options, host_id=target)
        _enqueue(RESTORE_TASK, run)
    return run


def _restore_host(app_id: str, backup_id: str, host_id: str | None) -> str | None:
    """The online host a restore of APP_ID from BACKUP_ID runs on: the app's
    host by the inventory; for an app on no host (uninstalled), HOST_ID or
    the host that made the snapshot. A snapshot kept only on one host's
    local disk cannot be restored on another: refused, naming the host."""
    snapshot = Snapshot.objects.filter(backup_id=backup_id, app_id=app_id).first()
    if snapshot is None:
        return None  # request_restore says "no snapshot" (404)
    try:
        target = route_app(app_id, host_id)
    except AppNotFound:
        target = route_to_host(host_id) if host_id else route_bound(snapshot.host_id)
    if snapshot.storage_location == "local" and snapshot.host_id != target:
        raise RestoreRefused(
            f"snapshot {backup_id} is stored only on the local disk of host "
            f"{snapshot.host_id}; it cannot be restored on host {target} (copy it to S3 "
            "storage first, or restore it on that host)"
        )
    return target


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
            if key == snapshot.storage_key:
                _refuse_if_on_another_hosts_disk(snapshot)
            continue
        freed += size
        removed.append(key)
    return freed, removed


def _refuse_if_on_another_hosts_disk(snapshot: Snapshot) -> None:
    """A local archive that is not here may be on the disk of the host that
    made it (fleet): dropping the row would strand it there, unknown to
    anyone. Refused (the row stays) unless this is that host."""
    if snapshot.storage_location == "local" and snapshot.host_id != settings.BACKUP_HOST_ID:
        raise SnapshotInUse(
            f"snapshot {snapshot.backup_id} is stored only on the local disk of host "
            f"{snapshot.host_id}, not here (host {settings.BACKUP_HOST_ID}); delete it "
            "through that host's worker (manage.py there), so its archive is not left behind"
        )
