"""Backup services: request a backup (rows only) and run it (the work)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine.backup import BackupOptions, archive_key, create_backup
from engine.discovery import get_app, validate_app_id
from engine.docker_client import connect
from engine.errors import EngineError, ObjectNotFound, Terminated, with_notes
from engine.priority import lower_priority
from engine.progress import Progress, ProgressCallback
from engine.quiesce import CONSISTENCY_MODES
from engine.steps import StepGuard
from snapshots.locks import Lease, acquire_app_lock, release_app_lock
from snapshots.models import AppBackupPolicy, Run, Snapshot
from snapshots.recovery import hand_over
from snapshots.run_journal import RunGuard
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, fail_run, finish_run
from snapshots.services.chain import BACKUP_TYPES, decide_chain
from snapshots.services.encryption import write_options
from snapshots.services.offsite import queue_upload
from snapshots.services.overrides import database_overrides
from snapshots.storage_locations import get_storage

logger = logging.getLogger(__name__)


class BackupRefused(EngineError):
    """The request itself is invalid; nothing was started."""


def new_backup_id(now: datetime | None = None) -> str:
    """backup_20260105_103000_3fa2c1: UTC time, then a random suffix so two
    backups in the same second never collide."""
    moment = now or datetime.now(UTC)
    return f"backup_{moment:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def _policy(app_id: str) -> AppBackupPolicy:
    return AppBackupPolicy.objects.filter(app_id=app_id).first() or AppBackupPolicy(
        app_id=app_id, consistency=settings.BACKUP_DEFAULT_CONSISTENCY
    )


def require_app_on_this_host(app_id: str) -> None:
    """AppNotFound unless APP_ID is a Compose project on this host's Docker
    engine now (DockerUnavailable when the engine does not answer). For the
    callers on the app's host (the command line); a request from elsewhere
    (the scheduler's shared queue) cannot ask this host's engine."""
    client = connect(settings.DOCKER_HOST)
    try:
        get_app(client, app_id)
    finally:
        client.close()


@transaction.atomic
def request_backup(
    app_id: str,
    *,
    purpose: str = Snapshot.Purpose.MANUAL,
    consistency: str | None = None,
    encrypt: bool | None = None,
    storage_location: str = "local",
    app_must_be_here: bool = False,
    backup_type: str = "full",
    host_id: str | None = None,
) -> Run:
    """Create the pending snapshot and run rows; the work runs in run_backup.
    Everything that can be refused is checked first, so a refused request
    leaves no row: the app id, the storage location, the consistency, the
    encryption settings and, with APP_MUST_BE_HERE, that the app exists on
    this host. BACKUP_TYPE "incremental" asks for one; whether it is one is
    decided when it runs (snapshots.services.chain)."""
    validate_app_id(app_id)  # AppNotFound naming the rule
    if backup_type not in BACKUP_TYPES:
        raise BackupRefused(f"backup type must be one of {', '.join(BACKUP_TYPES)}")
    get_storage(storage_location)  # unknown location: refused now, not later
    mode = consistency or _policy(app_id).consistency
    if mode not in CONSISTENCY_MODES:
        raise BackupRefused(f"consistency must be one of {', '.join(CONSISTENCY_MODES)}")
    recipients, passphrase = write_options(encrypt)
    if app_must_be_here:
        require_app_on_this_host(app_id)
    host_id = host_id or settings.BACKUP_HOST_ID  # the API routes to the app's host (fleet)
    snapshot = Snapshot.objects.create(
        backup_id=new_backup_id(), app_id=app_id, host_id=host_id,
        purpose=purpose, consistency=mode, compression=settings.BACKUP_COMPRESSION,
        encrypted=bool(recipients or passphrase), storage_location=storage_location,
    )  # fmt: skip
    return Run.objects.create(
        operation=Run.Operation.BACKUP, app_id=app_id, snapshot=snapshot, host_id=host_id,
        options={"encrypt": encrypt, "consistency": mode, "storage_location": storage_location,
                 "backup_type": backup_type},
    )  # fmt: skip


def run_backup(
    run_id: str,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    wait_for_lock_seconds: float = 0,
) -> Snapshot:
    """Do the backup of a pending run. Returns the snapshot, completed or
    failed; a failed one carries the reason. The snapshot becomes `completed`
    only after the archive and its sidecar are durable."""
    run = claim_run(run_id)
    if run is None:
        existing = Run.objects.select_related("snapshot").get(pk=run_id)
        logger.info("run %s already claimed (%s); not running it twice", run_id, existing.state)
        return existing.snapshot  # type: ignore[return-value]
    snapshot = run.snapshot
    if snapshot is None:  # the row was deleted between request and run
        fail_run(run, "the snapshot of this run no longer exists")
        raise BackupRefused(f"run {run_id} has no snapshot")
    try:
        lease = acquire_app_lock(run.app_id, run, wait_for_lock_seconds)
    except EngineError as exc:
        _fail(run, snapshot, str(exc))
        return snapshot
    except Terminated as exc:  # while waiting for the lock
        _fail(run, snapshot, str(exc))
        raise
    try:
        return perform_backup(run, snapshot, lease, on_progress)
    finally:
        handed_over = Run.objects.filter(pk=run.pk, state=Run.State.RUNNING).exists()
        if not handed_over:  # else the lease stays the run's, for its recovery
            release_app_lock(lease)


def perform_backup(
    run: Run,
    snapshot: Snapshot,
    lease: Lease,
    on_progress: Callable[[Progress], None] | None = None,
) -> Snapshot:
    """The backup itself, for a claimed run whose app LEASE the caller holds
    (run_backup, or a restore taking its safety backup). Never raises for a
    failed backup: the snapshot comes back failed, with the reason and what
    could not be put back (containers left paused). Stopped by a signal
    (Terminated), it is failed like that, then the Terminated is raised again."""
    try:
        _mark_running(snapshot)
        # The reporter stops (its last report written) before the final state.
        with run_reporter(run, on_progress, lease) as progress:
            _execute(
                snapshot, run.options.get("encrypt"), progress, RunGuard(run, lease),
                run.options.get("backup_type", "full"),
            )  # fmt: skip
        # `completed` is written last: the file and its sidecar are durable by now.
        snapshot.status = Snapshot.Status.COMPLETED
        snapshot.save()
        finish_run(run, _result(snapshot))
        queue_upload(snapshot)  # `local+s3` or `s3`: copied off-site by an upload run
    except Terminated as exc:
        _fail(run, snapshot, with_notes(str(exc), exc), exc, lease)
        raise
    except EngineError as exc:
        _fail(run, snapshot, with_notes(str(exc), exc), exc, lease)
    except Exception as exc:
        logger.exception("backup run %s crashed", run.pk)
        error = f"internal error ({type(exc).__name__}); see the worker log"
        _fail(run, snapshot, with_notes(error, exc), exc, lease)
    return snapshot


def _mark_running(snapshot: Snapshot) -> None:
    snapshot.status = Snapshot.Status.RUNNING
    snapshot.started_at = timezone.now()
    snapshot.save(update_fields=["status", "started_at"])


def _execute(
    snapshot: Snapshot, encrypt: bool | None, progress: ProgressCallback, guard: StepGuard,
    backup_type: str = "full",
) -> None:  # fmt: skip
    """Write the archive and fill SNAPSHOT's fields (not saved yet)."""
    if settings.BACKUP_IO_CLASS != "none":
        lower_priority(settings.BACKUP_NICE, settings.BACKUP_IO_CLASS)
    progress(Progress("discovering"))
    client = connect(settings.DOCKER_HOST)
    policy = _policy(snapshot.app_id)
    overrides = database_overrides(policy.database_overrides, client, snapshot.app_id)
    chain = decide_chain(snapshot, backup_type, policy)
    # Volume sizes are the progress total of a full backup. An incremental
    # reads only what changed, so the sizes would be a wrong total, and
    # measuring them is a walk of every volume before the backup's own walk.
    app = get_app(
        client, snapshot.app_id, measure_sizes=chain.link is None, overrides=overrides
    )  # fmt: skip
    for database in app.databases:
        logger.info("backup %s: database %s: %s", snapshot.backup_id, database.container.name,
                    database.detected_by)  # fmt: skip
    recipients, passphrase = write_options(encrypt)
    options = BackupOptions(
        compression=snapshot.compression,  # type: ignore[arg-type]
        compression_level=(
            settings.BACKUP_GZIP_LEVEL
            if snapshot.compression == "gzip"
            else settings.BACKUP_COMPRESSION_LEVEL
        ),
        compression_threads=settings.BACKUP_COMPRESSION_THREADS,
        recipients=recipients,
        passphrase=passphrase,
        consistency=snapshot.consistency,  # type: ignore[arg-type]
        include_databases=policy.include_databases,
        index_dir=settings.BACKUP_INDEX_DIR,
        chain=chain.link,
    )
    # The key is known before anything is written: recorded now, a backup that
    # dies half-way still names what it may have left, so deleting its
    # snapshot (or a recovery) removes it.
    snapshot.storage_key = archive_key(
        snapshot.app_id, snapshot.backup_id, options.compression, options.encrypted
    )
    snapshot.save(update_fields=["storage_key"])
    result = create_backup(
        client=client, app=app, backup_id=snapshot.backup_id,
        storage=get_storage(snapshot.storage_location), options=options,
        spool_dir=settings.BACKUP_SPOOL_DIR, progress=progress, guard=guard,
    )  # fmt: skip
    snapshot.storage_key = result.storage_key
    snapshot.size_bytes = result.size_bytes
    snapshot.sha256 = result.sha256
    snapshot.contents = result.contents
    if backup_type == "incremental" and result.chain is None:
        snapshot.contents["full_because"] = chain.why_full or "the parent's index is unusable"
    snapshot.kind = result.kind
    snapshot.parent = chain.parent if result.chain is not None else None
    snapshot.chain_position = result.chain.position if result.chain is not None else 0
    snapshot.bytes_written = result.bytes_written
    snapshot.bytes_full = result.bytes_full
    snapshot.warnings = result.warnings
    for warning in result.warnings:
        logger.warning("backup %s: %s", snapshot.backup_id, warning)
    snapshot.encryption = (
        "age-x25519" if recipients else "age-scrypt" if passphrase is not None else ""
    )
    snapshot.finished_at = timezone.now()


def _fail(
    run: Run,
    snapshot: Snapshot,
    error: str,
    exc: BaseException | None = None,
    lease: Lease | None = None,
) -> None:
    """The snapshot failed, and so does the run; unless containers the backup
    paused or stopped could not be brought back (EXC says which): then the
    run is handed to this host's recovery, which retries from its journal."""
    error += _remove_stored_files(snapshot)
    snapshot.status = Snapshot.Status.FAILED
    snapshot.error = error
    snapshot.finished_at = timezone.now()
    snapshot.save(update_fields=["status", "error", "finished_at", "storage_key"])
    result = {"backup_id": snapshot.backup_id, "app_id": snapshot.app_id}
    not_resumed = getattr(exc, "not_resumed", None)
    if not_resumed and lease is not None:
        hand_over(run, lease, error, result | {"not_resumed": not_resumed})
    else:
        fail_run(run, error, result)


def _remove_stored_files(snapshot: Snapshot) -> str:
    """A failed snapshot keeps no file: the engine leaves none on a failure
    of its own, but a failure after it returned (the database, a crash of
    this code) may find the archive and its sidecar committed. Returns what
    to add to the error: nothing when no file is left (storage_key is then
    cleared), else where the leftover is (storage_key kept, so deleting the
    snapshot retries)."""
    if not snapshot.storage_key:
        return ""
    keys = (snapshot.storage_key, f"{snapshot.storage_key}.sha256")
    removed = []
    try:
        storage = get_storage(snapshot.storage_location)
        for key in keys:
            try:
                storage.delete(key)
                removed.append(key)
            except ObjectNotFound:
                continue
    except EngineError as exc:
        logger.error("backup %s failed; removing its files failed: %s", snapshot.backup_id, exc)
        return (
            f"; its file {snapshot.storage_location}:{snapshot.storage_key} may be left: "
            f"removing it failed ({exc}); delete the snapshot to remove it"
        )
    snapshot.storage_key = ""
    if removed:
        logger.warning("backup %s failed; removed %s", snapshot.backup_id, ", ".join(removed))
        return f"; the stored archive was removed ({', '.join(removed)})"
    return ""


def _result(snapshot: Snapshot) -> dict[str, object]:
    return {
        "backup_id": snapshot.backup_id,
        "app_id": snapshot.app_id,
        "size_bytes": snapshot.size_bytes,
        "sha256": snapshot.sha256,
        "storage_key": snapshot.storage_key,
        "kind": snapshot.kind,
        "parent_backup_id": snapshot.parent.backup_id if snapshot.parent else None,
        "chain_length": snapshot.chain_length,
        "bytes_written": snapshot.bytes_written,
        "bytes_full": snapshot.bytes_full,
        "consistency": snapshot.consistency,
        "encrypted": snapshot.encrypted,
        "duration_seconds": snapshot.duration_seconds,
        "warnings": snapshot.warnings,
    }
