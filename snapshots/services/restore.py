"""Restore services: request a restore (validated rows only) and run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import docker
from django.conf import settings
from django.db import IntegrityError, transaction

from engine.archive.source import open_tar_source
from engine.discovery import get_app
from engine.docker_client import connect
from engine.errors import AppNotFound, EngineError
from engine.inventory import AppInfo
from engine.progress import Progress, ProgressCallback
from engine.restore.orchestrate import (
    RestoreFailed,
    restore_app,
    restore_databases_from_archive,
)
from engine.restore.plan import OpenStream, make_plan, read_backup_json
from snapshots.locks import Lease, acquire_app_lock, app_is_locked, release_app_lock
from snapshots.models import Run, Snapshot
from snapshots.run_journal import RunGuard
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, fail_run, finish_run
from snapshots.services.backup import perform_backup, request_backup
from snapshots.services.encryption import identities, passphrase
from snapshots.services.verify import verify_snapshot
from snapshots.storage_locations import get_storage

logger = logging.getLogger(__name__)


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
    busy = Run.objects.filter(
        app_id=app_id,
        operation__in=[Run.Operation.BACKUP, Run.Operation.RESTORE],
        state__in=[Run.State.PENDING, Run.State.RUNNING],
        operation=Run.Operation.RESTORE,
    ).exists() or app_is_locked(app_id)
    message = f"app {app_id} is busy with another backup or restore; try again later"
    if busy:
        raise AppBusy(message)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives
            return Run.objects.create(
                operation=Run.Operation.RESTORE, app_id=app_id, snapshot=snapshot,
                host_id=settings.BACKUP_HOST_ID, options=asdict(options),
            )  # fmt: skip
    except IntegrityError as exc:
        # A concurrent request got in between our check and this insert.
        raise AppBusy(message) from exc


def run_restore(run_id: str, on_progress: Callable[[Progress], None] | None = None) -> Run:
    """Do the restore of a pending run; returns the run, completed or failed
    with the reason and what was rolled back."""
    run = claim_run(run_id)
    if run is None:
        return Run.objects.get(pk=run_id)
    started = time.monotonic()
    options = RestoreOptions(**run.options)
    result = _initial_result(run)
    try:
        lease = acquire_app_lock(run.app_id, run)
    except EngineError as exc:
        fail_run(run, str(exc), result | {"duration_seconds": _since(started)})
        return run
    try:
        snapshot = run.snapshot
        if snapshot is None:
            raise RestoreRefused("the snapshot of this restore was deleted")
        result["backup_id"] = snapshot.backup_id
        # The reporter stops (its last report written) before the final state.
        with run_reporter(run, on_progress, lease) as progress:
            _restore(run, snapshot, options, result, progress, lease)
        result["duration_seconds"] = round(time.monotonic() - started, 3)
        finish_run(run, result)
    except RestoreFailed as exc:
        result |= {"rolled_back": exc.rolled_back, "duration_seconds": _since(started)}
        fail_run(run, str(exc), result)
    except EngineError as exc:
        result |= {"rolled_back": [], "duration_seconds": _since(started)}
        fail_run(
            run, f"{exc}; nothing was changed" if "nothing" not in str(exc) else str(exc), result
        )
    except Exception as exc:
        logger.exception("restore run %s crashed", run.pk)
        result["duration_seconds"] = _since(started)
        fail_run(run, f"internal error ({type(exc).__name__}); see the worker log", result)
    finally:
        release_app_lock(lease)
    return run


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _initial_result(run: Run) -> dict[str, Any]:
    """Every key of a restore's result, as for one that restored nothing (a
    failed restore is rolled back, so that stays true when it fails).
    app_id, snapshot_id, restored_volumes (a count), database_restored and
    duration_seconds are the platform UI's original shape; the names are in
    restored_volume_names and restored_databases."""
    backup_id = run.snapshot.backup_id if run.snapshot is not None else None
    return {
        "app_id": run.app_id, "snapshot_id": backup_id, "backup_id": backup_id,
        "restored_volumes": 0, "restored_volume_names": [], "database_restored": False,
        "restored_databases": [], "skipped_volumes": {}, "started_containers": [],
        "safety_backup_id": None, "duration_seconds": 0.0,
    }  # fmt: skip


def _open_stream(snapshot: Snapshot) -> OpenStream:
    def open_stream() -> AbstractContextManager[BinaryIO]:
        return open_tar_source(
            get_storage(snapshot.storage_location), snapshot.storage_key,
            compression=snapshot.compression,  # type: ignore[arg-type]
            encrypted=snapshot.encrypted,
            identities=identities() if snapshot.encrypted else (),
            passphrase=passphrase() if snapshot.encrypted else None,
        )  # fmt: skip

    return open_stream


def _validate(snapshot: Snapshot, progress: ProgressCallback) -> None:
    """Step 1: every byte checked (SHA-256, decryption, every member against
    the manifest) before anything is touched."""
    progress(Progress("validating"))
    report = verify_snapshot(snapshot, deep=True, progress=progress)
    if not report["valid"]:
        reasons = "; ".join(report["errors"][:3])
        raise RestoreRefused(f"backup {snapshot.backup_id} failed validation: {reasons}")


def _safety_backup(run: Run, progress: ProgressCallback, lease: Lease) -> Snapshot:
    """Step 2: a normal full backup of the current state, marked pre-restore."""
    progress(Progress("safety backup"))
    safety_run = request_backup(run.app_id, purpose=Snapshot.Purpose.PRE_RESTORE)
    claimed = claim_run(str(safety_run.pk))
    if claimed is None or claimed.snapshot is None:
        raise RestoreRefused("could not start the safety backup")
    safety = perform_backup(claimed, claimed.snapshot, lease, progress)
    if safety.status != Snapshot.Status.COMPLETED:
        raise RestoreRefused(f"the safety backup failed ({safety.error}); nothing was changed")
    return safety


def _current_app(client: docker.DockerClient, app_id: str) -> AppInfo:
    try:
        return get_app(client, app_id)
    except AppNotFound:
        # Nothing of the app is left (uninstalled): its volumes are recreated.
        return AppInfo(app_id=app_id, containers=(), volumes=(), databases=(), config_files=())


def _restore(
    run: Run,
    snapshot: Snapshot,
    options: RestoreOptions,
    result: dict[str, Any],
    progress: ProgressCallback,
    lease: Lease,
) -> None:
    guard = RunGuard(run, lease)
    _validate(snapshot, progress)
    client = connect(settings.DOCKER_HOST)
    app = _current_app(client, run.app_id)
    open_stream = _open_stream(snapshot)
    plan = make_plan(client, app, read_backup_json(open_stream), options.restore_database)
    safety = (
        _safety_backup(run, progress, lease)
        if options.backup_before_restore and app.containers
        else None
    )
    result["safety_backup_id"] = safety.backup_id if safety else None
    if safety is not None:
        # Recovery reads this to roll the databases back after a crash.
        guard.note("safety_backup", {"backup_id": safety.backup_id})
    rollback = None
    if safety is not None and plan.databases:
        spool = settings.BACKUP_SPOOL_DIR / f"rollback-{run.pk}"

        def rollback() -> list[str]:
            return restore_databases_from_archive(
                client=client, app=app, open_stream=_open_stream(safety), spool_dir=spool
            )

    outcome = restore_app(
        client=client, app=app, plan=plan, open_stream=open_stream, stop_app=options.stop_app,
        spool_dir=settings.BACKUP_SPOOL_DIR / f"restore-{run.pk}", progress=progress,
        database_rollback=rollback, guard=guard,
    )  # fmt: skip
    result |= {
        "restored_volumes": len(outcome.restored_volumes),
        "restored_volume_names": outcome.restored_volumes,
        "skipped_volumes": outcome.skipped_volumes,
        "database_restored": outcome.database_restored,
        "restored_databases": outcome.databases,
        "started_containers": outcome.started_containers,
    }


def roll_back_databases_from(run: Run, safety: Snapshot) -> list[str]:
    """Recovery's database rollback for a dead restore: load the databases
    of RUN's app back from its SAFETY backup."""
    client = connect(settings.DOCKER_HOST)
    return restore_databases_from_archive(
        client=client, app=_current_app(client, run.app_id), open_stream=_open_stream(safety),
        spool_dir=settings.BACKUP_SPOOL_DIR / f"rollback-{run.pk}",
    )  # fmt: skip
