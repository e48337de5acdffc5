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
from engine.errors import AppNotFound, EngineError, Terminated, with_notes
from engine.inventory import AppInfo
from engine.progress import Progress, ProgressCallback
from engine.restore.orchestrate import (
    RestoreFailed,
    restore_app,
    restore_databases_from_archive,
)
from engine.restore.plan import OpenStream, RestorePlan, make_plan, read_backup_json
from engine.restore.volume_users import containers_to_stop, refuse_foreign_users
from snapshots.locks import Lease, acquire_app_lock, app_is_locked, release_app_lock
from snapshots.models import AppBackupPolicy, Run, Snapshot
from snapshots.recovery import hand_over
from snapshots.run_journal import RunGuard
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, fail_run, finish_run
from snapshots.services.encryption import (
    EncryptionNotConfigured,
    identities,
    passphrase,
    write_options,
)
from snapshots.services.restore_notes import missing_services_warning
from snapshots.services.restore_safety import (
    needs_safety_backup,
    take_safety_backup,
    uncovered_message,
    uncovered_volumes,
    volumes_holding_data,
)
from snapshots.services.verify import verify_snapshot
from snapshots.storage_locations import get_storage

logger = logging.getLogger(__name__)


class RestoreRefused(EngineError):
    """The restore cannot start (snapshot not restorable, app busy); nothing changed."""


class SnapshotNotFound(RestoreRefused):
    pass


class AppBusy(RestoreRefused):
    pass


class NoDatabaseRollback(RestoreRefused):
    """The restore would change databases that a failure could not put back."""


@dataclass(frozen=True)
class RestoreOptions:
    stop_app: bool = True
    restore_database: bool = True
    backup_before_restore: bool = True
    # Restore the databases even though the safety backup could not roll them
    # back (it holds no dump of them, or this worker cannot read it).
    accept_no_database_rollback: bool = False


ACCEPT_HINT = (
    "to restore anyway, without a rollback of the databases, pass "
    "accept_no_database_rollback=true (CLI: --accept-no-database-rollback)"
)


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
    ).exists() or app_is_locked(app_id)
    message = f"app {app_id} is busy with another backup or restore; try again later"
    if busy:
        raise AppBusy(message)
    _refuse_if_policy_prevents_rollback(snapshot, options)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives
            return Run.objects.create(
                operation=Run.Operation.RESTORE, app_id=app_id, snapshot=snapshot,
                host_id=settings.BACKUP_HOST_ID, options=asdict(options),
            )  # fmt: skip
    except IntegrityError as exc:
        # A concurrent request got in between our check and this insert.
        raise AppBusy(message) from exc


def _refuse_if_policy_prevents_rollback(snapshot: Snapshot, options: RestoreOptions) -> None:
    """The one rollback gap known without the worker: the app's policy keeps
    databases out of its backups, so the safety backup would hold no dump of
    the databases this snapshot restores. (The worker checks the rest.)"""
    if not (
        options.restore_database
        and options.backup_before_restore
        and not options.accept_no_database_rollback
        and (snapshot.contents or {}).get("databases")
    ):
        return
    if _policy_excludes_databases(snapshot.app_id):
        raise NoDatabaseRollback(_no_rollback_message(snapshot.app_id, _POLICY_GAP))


_POLICY_GAP = (
    "the app's backup policy excludes databases (include_databases=false), so the safety "
    "backup would hold no dump of them"
)


def _no_rollback_message(app_id: str, why: str, databases: list[str] | None = None) -> str:
    which = f" ({', '.join(databases)})" if databases else ""
    return (
        f"restore of app {app_id} refused: it restores databases{which} that could not be "
        f"rolled back if the restore failed: {why}; nothing was changed; {ACCEPT_HINT}"
    )


def run_restore(run_id: str, on_progress: Callable[[Progress], None] | None = None) -> Run:
    """Do the restore of a pending run; returns the run, completed (with
    warnings for tidying left to do) or failed with the reason, what was
    rolled back and what could not be. Stopped by a signal (Terminated), the
    run is failed like that, then the Terminated is raised again."""
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
    handed_over = False
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
        result |= {
            "rolled_back": exc.rolled_back, "not_rolled_back": exc.not_rolled_back,
            "duration_seconds": _since(started),
        }  # fmt: skip
        if exc.left_undone:
            # The app is not as it was: the run is not over until it is.
            hand_over(run, lease, str(exc), result)
            handed_over = True
        else:
            fail_run(run, str(exc), result)
        if exc.terminated is not None:
            raise exc.terminated from None
    except (EngineError, Terminated) as exc:  # before anything was changed
        result |= {"rolled_back": [], "not_rolled_back": [], "duration_seconds": _since(started)}
        # Notes: what a safety backup stopped here could not put back.
        unchanged = "nothing" in str(exc) or getattr(exc, "__notes__", None)
        fail_run(run, with_notes(str(exc) if unchanged else f"{exc}; nothing was changed", exc),
                 result)  # fmt: skip
        if isinstance(exc, Terminated):
            raise
    except Exception as exc:
        logger.exception("restore run %s crashed", run.pk)
        result["duration_seconds"] = _since(started)
        fail_run(run, f"internal error ({type(exc).__name__}); see the worker log", result)
    finally:
        if not handed_over:
            release_app_lock(lease)
    run.refresh_from_db()
    return run


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _initial_result(run: Run) -> dict[str, Any]:
    """Every key of a restore's result, as for one that restored nothing (a
    failed restore is rolled back, so that stays true when it fails).
    app_id, snapshot_id, restored_volumes (a count), database_restored and
    duration_seconds are the platform UI's original shape; the names are in
    restored_volume_names and restored_databases. database_rollback: None
    when no database is restored, else whether a failure would restore the
    databases from the safety backup (False: warnings say why not)."""
    backup_id = run.snapshot.backup_id if run.snapshot is not None else None
    return {
        "app_id": run.app_id, "snapshot_id": backup_id, "backup_id": backup_id,
        "restored_volumes": 0, "restored_volume_names": [], "database_restored": False,
        "restored_databases": [], "skipped_volumes": {}, "started_containers": [],
        "safety_backup_id": None, "duration_seconds": 0.0,
        "database_rollback": None, "warnings": [],
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


def _predicted_rollback_gap(app_id: str) -> str | None:
    """Why the safety backup about to be taken could not give the databases
    back, as far as is known before taking it (the policy and the settings)."""
    if _policy_excludes_databases(app_id):
        return _POLICY_GAP
    recipients, secret = write_options(None)
    if recipients and secret is None and not _identities_or_none():
        return (
            "the safety backup would be encrypted to age recipients only and this worker has "
            "no identity to read it back (BACKUP_AGE_IDENTITY_FILE)"
        )
    return None


def _policy_excludes_databases(app_id: str) -> bool:
    return AppBackupPolicy.objects.filter(app_id=app_id, include_databases=False).exists()


def _identities_or_none() -> list[str]:
    try:
        return identities()
    except EncryptionNotConfigured:  # the file named cannot be read: no identity
        return []


def _rollback_gap(
    client: docker.DockerClient, app: AppInfo, plan: RestorePlan, safety: Snapshot
) -> str | None:
    """Why the safety backup just taken cannot give the databases of PLAN
    back: its backup.json is read as the rollback would read it (decryption
    included), and it must hold a dump of every database the restore changes."""
    try:
        backup = read_backup_json(_open_stream(safety))
        rollback_plan = make_plan(client, app, backup, restore_database=True)
    except EngineError as exc:
        return f"the safety backup {safety.backup_id} cannot be read back on this worker: {exc}"
    missing = sorted(set(plan.databases) - set(rollback_plan.databases))
    if missing:
        return f"the safety backup {safety.backup_id} holds no dump of {', '.join(missing)}"
    return None


def _no_rollback(
    run: Run, options: RestoreOptions, plan: RestorePlan, why: str, result: dict[str, Any]
) -> None:
    """Refuse (nothing touched yet), or go on when the caller accepted it,
    saying so in the result."""
    databases = sorted(plan.databases)
    if not options.accept_no_database_rollback:
        raise NoDatabaseRollback(_no_rollback_message(run.app_id, why, databases))
    logger.warning("restore %s: no database rollback possible (accepted): %s", run.pk, why)
    result["database_rollback"] = False
    result["warnings"].append(
        f"no rollback of the databases ({', '.join(databases)}) is possible: {why}; "
        "accepted by the caller (accept_no_database_rollback)"
    )


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
    backup = read_backup_json(open_stream)
    plan = make_plan(client, app, backup, options.restore_database)
    if plan.raw_volumes:  # before anything is touched, the safety backup included
        refuse_foreign_users(client, app, plan.raw_volumes, [c.id for c in containers_to_stop(app)])
    holding = volumes_holding_data(client, plan)
    take_safety = options.backup_before_restore and needs_safety_backup(app, holding)
    if take_safety and (uncovered := uncovered_volumes(app, holding)):
        raise RestoreRefused(uncovered_message(run.app_id, uncovered))
    # Before anything is touched: could a failure give the databases back?
    if plan.databases:
        result["database_rollback"] = take_safety
        if not take_safety:
            result["warnings"].append(
                "no safety backup was taken: if the restore fails, the databases "
                f"({', '.join(sorted(plan.databases))}) cannot be rolled back"
            )
        elif gap := _predicted_rollback_gap(run.app_id):
            _no_rollback(run, options, plan, gap, result)
    safety = take_safety_backup(run, progress, lease) if take_safety else None
    result["safety_backup_id"] = safety.backup_id if safety else None
    if (
        safety is not None
        and result["database_rollback"]
        and (gap := _rollback_gap(client, app, plan, safety))
    ):
        _no_rollback(run, options, plan, gap, result)
    if safety is not None:
        # Recovery reads this to roll the databases back after a crash.
        guard.note("safety_backup", {"backup_id": safety.backup_id})
    rollback = None
    if safety is not None and plan.databases:

        def rollback() -> list[str]:
            return roll_back_databases_from(run, safety, client, app)

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
    result["warnings"] += outcome.warnings
    if missing := missing_services_warning(backup, app):
        result["warnings"].append(missing)


def roll_back_databases_from(
    run: Run,
    safety: Snapshot,
    client: docker.DockerClient | None = None,
    app: AppInfo | None = None,
) -> list[str]:
    """Load the databases of RUN's app back from its SAFETY backup: a failed
    restore's rollback (CLIENT and APP known), or recovery's for a dead one."""
    client = client or connect(settings.DOCKER_HOST)
    return restore_databases_from_archive(
        client=client, app=app or _current_app(client, run.app_id),
        open_stream=_open_stream(safety),
        spool_dir=settings.BACKUP_SPOOL_DIR / f"rollback-{run.pk}",
    )  # fmt: skip
