"""Restore services: request a restore (validated rows only) and run it.

The pieces: restore_errors (refusals), restore_archive (opening the stored
archive), restore_rollback (could a failure give the databases back?),
restore_safety (the safety backup), restore_notes (warnings); the engine
does the work (engine.restore)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import docker
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from engine.discovery import get_app
from engine.docker_client import connect
from engine.errors import AppNotFound, EngineError, Terminated, with_notes
from engine.inventory import AppInfo
from engine.progress import Progress, ProgressCallback
from engine.restore import timeline as phases
from engine.restore.orchestrate import (
    RestoreFailed,
    restore_app,
    restore_databases_from_archive,
)
from engine.restore.plan import make_plan
from engine.restore.shadow_loads import plan_shadow_loads
from engine.restore.staging import StoredArchive, prepare, stage, why_not_while_running
from engine.restore.timeline import Timeline
from engine.restore.volume_users import containers_to_stop, refuse_foreign_users
from snapshots.locks import (
    Lease,
    acquire_app_lock,
    app_is_locked,
    lock_host,
    release_app_lock,
)
from snapshots.models import Run, Snapshot
from snapshots.recovery import hand_over
from snapshots.run_journal import RunGuard
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, fail_run, finish_run
from snapshots.services.restore_archive import first_member, open_stream, stored_archive
from snapshots.services.restore_chain import chain_volume_sizes, ready_chain, refuse_broken_chain
from snapshots.services.restore_errors import (
    AppBusy,
    NoDatabaseRollback,
    RestoreRefused,
    SnapshotNotFound,
)
from snapshots.services.restore_migrate import app_on_this_host
from snapshots.services.restore_notes import missing_services_warning
from snapshots.services.restore_rollback import (
    POLICY_GAP,
    no_rollback,
    no_rollback_message,
    policy_excludes_databases,
    predicted_rollback_gap,
    rollback_gap,
)
from snapshots.services.restore_safety import (
    needs_safety_backup,
    take_safety_backup,
    uncovered_message,
    uncovered_volumes,
    volumes_holding_data,
)
from snapshots.services.verify import verify_snapshot

__all__ = [
    "AppBusy", "NoDatabaseRollback", "RestoreOptions", "RestoreRefused", "SnapshotNotFound",
    "request_restore", "roll_back_databases_from", "run_restore",
]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreOptions:
    stop_app: bool = True
    restore_database: bool = True
    backup_before_restore: bool = True
    # Restore the databases even though the safety backup could not roll them
    # back (it holds no dump of them, or this worker cannot read it).
    accept_no_database_rollback: bool = False


def request_restore(
    app_id: str, backup_id: str, options: RestoreOptions, host_id: str | None = None
) -> Run:
    """Create a pending restore run after the cheap checks: the snapshot exists,
    belongs to APP_ID and is completed, and the app is not busy."""
    snapshot = Snapshot.objects.filter(backup_id=backup_id, app_id=app_id).first()
    if snapshot is None:
        raise SnapshotNotFound(f"no snapshot {backup_id} of app {app_id}")
    if snapshot.status != Snapshot.Status.COMPLETED:
        raise RestoreRefused(
            f"snapshot {backup_id} is {snapshot.status}; only completed snapshots can be restored"
        )
    if snapshot.kind == Snapshot.Kind.INCREMENTAL:
        refuse_broken_chain(snapshot)  # the rest is checked when it runs
    # The app on the host the restore runs on: the same app id on another
    # host is another app (its own lock and runs).
    host = lock_host(host_id)
    busy = Run.objects.filter(
        Q(host_id=host) | Q(host_id=""),  # "": a row from before runs named their host
        app_id=app_id,
        operation__in=[Run.Operation.BACKUP, Run.Operation.RESTORE],
        state__in=[Run.State.PENDING, Run.State.RUNNING],
    ).exists() or app_is_locked(app_id, host)
    message = f"app {app_id} is busy with another backup or restore; try again later"
    if busy:
        raise AppBusy(message)
    _refuse_if_policy_prevents_rollback(snapshot, options)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives
            return Run.objects.create(
                operation=Run.Operation.RESTORE, app_id=app_id, snapshot=snapshot,
                host_id=host_id or settings.BACKUP_HOST_ID, options=asdict(options),
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
    if policy_excludes_databases(snapshot.app_id):
        raise NoDatabaseRollback(no_rollback_message(snapshot.app_id, POLICY_GAP))


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
    databases from the safety backup (False: warnings say why not).
    downtime_seconds: from the first stop to the app started (its last
    container's start), beside the whole duration_seconds; phases: seconds
    per phase (engine.restore.timeline); staged_while_running: whether the
    volumes were extracted before the stop (False: the old order, and
    staged_while_running_why_not says why); recreated: the containers,
    volumes and networks made on a host where the app had none (a migration)."""
    backup_id = run.snapshot.backup_id if run.snapshot is not None else None
    return {
        "app_id": run.app_id, "snapshot_id": backup_id, "backup_id": backup_id,
        "restored_volumes": 0, "restored_volume_names": [], "database_restored": False,
        "restored_databases": [], "skipped_volumes": {}, "started_containers": [],
        "safety_backup_id": None, "duration_seconds": 0.0, "downtime_seconds": 0.0,
        "phases": {}, "staged_while_running": None, "staged_while_running_why_not": None,
        "database_rollback": None, "recreated": None, "warnings": [],
    }  # fmt: skip


def _validate(snapshot: Snapshot, progress: ProgressCallback) -> None:
    """Step 1: every byte checked (SHA-256, decryption, every member against
    the manifest) before anything is touched."""
    progress(Progress("validating"))
    report = verify_snapshot(snapshot, deep=True, progress=progress)
    if not report["valid"]:
        reasons = "; ".join(report["errors"][:3])
        raise RestoreRefused(f"backup {snapshot.backup_id} failed validation: {reasons}")


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
    """Check what is cheap, stage the volumes and spool the dumps in one
    checked read while the app runs (or, without room to stage beside the
    live data, validate first and extract after the stop), take the safety
    backup, then stop, swap, restore the databases and start (restore_app)."""
    guard = RunGuard(run, lease)
    timeline = Timeline()
    open_tar = open_stream(snapshot)
    links: list[Snapshot] = []
    chain: list[StoredArchive] = []
    backups: list[dict[str, Any]] = []
    if snapshot.kind == Snapshot.Kind.INCREMENTAL:  # every link checked first
        links, chain, backups = ready_chain(snapshot)
    stored = chain[0] if chain else stored_archive(snapshot)  # no key: refused here
    backup = backups[0] if chain else first_member(snapshot, open_tar)
    client = connect(settings.DOCKER_HOST)
    app_here = app_on_this_host(client, run.app_id, snapshot.backup_id, open_tar, result, guard)
    with app_here as (app, recreated):  # a failure in here removes what it recreated
        plan = make_plan(client, app, backup, options.restore_database)
        if plan.raw_volumes:  # before anything is touched, the safety backup included
            refuse_foreign_users(
                client, app, plan.raw_volumes, [c.id for c in containers_to_stop(app)]
            )
        holding = volumes_holding_data(client, plan)
        # Recreated: nothing was here to keep; a failure removes what was made.
        take_safety = (
            options.backup_before_restore and not recreated and needs_safety_backup(app, holding)
        )
        if take_safety and (uncovered := uncovered_volumes(app, holding)):
            raise RestoreRefused(uncovered_message(run.app_id, uncovered))
        accepted = options.accept_no_database_rollback
        # Before anything is touched: could a failure give the databases back?
        if plan.databases:
            result["database_rollback"] = take_safety
            if not take_safety and not recreated:
                result["warnings"].append(
                    "no safety backup was taken: if the restore fails, the databases "
                    f"({', '.join(sorted(plan.databases))}) cannot be rolled back"
                )
            elif gap := predicted_rollback_gap(run.app_id):
                no_rollback(run, accepted, plan, gap, result)
        staged = prepare(client, app, plan, settings.BACKUP_SPOOL_DIR / f"restore-{run.pk}")
        handed_over = False
        try:
            recorded = (
                chain_volume_sizes(links)
                if chain
                else (snapshot.contents or {}).get("volumes") or {}
            )
            why_not = why_not_while_running(staged.data_dirs, recorded)
            result["staged_while_running"] = why_not is None
            if why_not is None:
                staged.shadows = plan_shadow_loads(
                    client, plan, str(run.pk), settings.BACKUP_RESTORE_LOAD_WHILE_RUNNING
                )
                with timeline.phase(phases.VALIDATE_AND_STAGE):
                    stage(staged, stored, progress, guard, chain, backups)
            elif chain:  # the old order extracts one archive: never a chain
                raise RestoreRefused(
                    f"incremental {snapshot.backup_id} is restored only by staging its chain while "
                    f"the app runs, and that is not possible: {why_not}"
                )
            else:
                result["staged_while_running_why_not"] = why_not
                result["warnings"].append(
                    f"the volumes were not staged while the app ran: {why_not}; the app was "
                    "stopped first and the archive extracted while it was down (the old order)"
                )
                with timeline.phase(phases.VALIDATE):
                    _validate(snapshot, progress)
            with timeline.phase(phases.SAFETY_BACKUP):
                safety = take_safety_backup(run, progress, lease) if take_safety else None
            result["safety_backup_id"] = safety.backup_id if safety else None
            if (
                safety is not None
                and result["database_rollback"]
                and (gap := rollback_gap(client, app, plan, safety))
            ):
                no_rollback(run, accepted, plan, gap, result)
            if safety is not None:
                # Recovery reads this to roll the databases back after a crash.
                guard.note("safety_backup", {"backup_id": safety.backup_id})
            rollback = None
            if safety is not None and plan.databases:

                def rollback() -> list[str]:
                    return roll_back_databases_from(run, safety, client, app)

            handed_over = True  # the staging dirs are restore_app's from here
            outcome = restore_app(
                client=client, app=app, plan=plan, open_stream=open_tar, stop_app=options.stop_app,
                spool_dir=staged.spool_dir, progress=progress, database_rollback=rollback,
                guard=guard, staged=staged if why_not is None else None, timeline=timeline,
            )  # fmt: skip
        except BaseException:
            if not handed_over:
                staged.discard(client)  # never raises
            raise
        finally:
            result["phases"] = dict(timeline.phases)
            result["downtime_seconds"] = timeline.downtime_seconds
        result |= {
            "restored_volumes": len(outcome.restored_volumes),
            "restored_volume_names": outcome.restored_volumes,
            "skipped_volumes": outcome.skipped_volumes,
            "database_restored": outcome.database_restored,
            "restored_databases": outcome.databases,
            # Loaded while the app ran, swapped in during the downtime; and
            # why the other MySQL/MariaDB dumps were loaded in the downtime.
            "databases_loaded_while_running": outcome.loaded_while_running,
            "databases_loaded_in_downtime": outcome.loaded_in_downtime,
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
        open_stream=open_stream(safety),
        spool_dir=settings.BACKUP_SPOOL_DIR / f"rollback-{run.pk}",
    )  # fmt: skip
