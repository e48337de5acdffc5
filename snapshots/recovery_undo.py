"""Undoing what a dead run left, from its journal (snapshots.recovery finds
the dead runs and claims them; this puts their apps back), and the sweeps of
what no run owns any more: spool entries and half-written files.

- backup: containers it paused or stopped run again; its half-written files
  and spool go;
- restore, commit decided: the swaps are finished (old data dropped), the
  app runs on the restored data;
- restore, not committed: the app's containers are stopped, every swapped
  volume gets its old data back, databases touched are restored from the
  safety backup, and what was running runs again. A volume that a container
  outside the run still uses is left alone, for an operator, and said so."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from engine import steps
from engine.backup import archive_key
from engine.docker_client import connect
from engine.recovery import (
    RecoveryReport,
    bring_back,
    discard_stages,
    running_users,
    settle_volume,
    stop_running,
)
from engine.recreate.create import remove_planned
from engine.restore.shadow_recovery import settle_shadows
from snapshots.models import Run, Snapshot
from snapshots.storage_locations import get_storage, storage_names

ACTIVE = (Run.State.PENDING, Run.State.RUNNING)


def undo(run: Run) -> RecoveryReport:
    """Put RUN's app back after its worker died, from its journal."""
    report = RecoveryReport()
    journal = run.journal or []
    touched = [e for e in journal if e.get("step") in (steps.STOP, steps.PAUSE)]
    was_running = [c for e in touched for c in e.get("containers", [])]
    if run.operation == Run.Operation.RESTORE:
        _undo_restore(run, journal, was_running, report)
    elif was_running:
        bring_back(connect(settings.DOCKER_HOST), was_running, report)
    if run.operation == Run.Operation.BACKUP:
        _discard_partials(run, report)
    _remove_spools(run, report)
    return report


def _undo_restore(
    run: Run, journal: list[dict[str, Any]], was_running: list[str], report: RecoveryReport
) -> None:
    client = connect(settings.DOCKER_HOST)
    committed = any(e.get("step") == steps.COMMIT for e in journal)
    swaps = [e for e in journal if e.get("step") == steps.SWAP]
    swapped = {e["volume"] for e in swaps}
    # Staged while the app ran and not swapped in (a swapped volume's
    # leftovers are settle_volume's): deleted, nothing else to undo.
    stages = {v: p for e in journal if e.get("step") == steps.STAGE
              for v, p in e.get("volumes", {}).items() if v not in swapped}  # fmt: skip
    discard_stages(stages, report)
    recreated = next((e for e in journal if e.get("step") == steps.RECREATE), None)
    if recreated is not None and not committed:
        # The app had nothing on this host: undone, it has nothing again.
        done, left = remove_planned(client, run.app_id, recreated)
        report.done += [f"removed {what} (recreated by the restore)" for what in done]
        report.failed += [f"{what} (recreated by the restore) not removed" for what in left]
        return
    databases = [e for e in journal if e.get("step") == steps.DATABASE]
    loads = [e for e in databases if not e.get("swap")]  # a swap is settle_shadows'
    if swaps or databases:
        if not committed and not stop_running(client, was_running, report):
            report.left_for_operator.append(
                "volumes left as they are: the app's containers could not be stopped"
            )
            return
        for entry in swaps:
            volume, volume_dir = entry["volume"], Path(entry["dir"])
            others = [] if committed else running_users(client, volume, was_running)
            if others:
                report.left_for_operator.append(
                    f"volume {volume} left half-restored: running containers "
                    f"{', '.join(others)} use it; recovery puts it back once they are stopped"
                )
                report.retry = True
                continue
            try:
                outcome = settle_volume(volume_dir, keep_restored=committed)
                report.done.append(f"volume {volume}: {outcome}")
            except Exception as exc:
                report.failed.append(f"volume {volume}: {type(exc).__name__}: {exc}")
        if loads and not committed:
            _roll_back_databases(run, journal, report)
    # Swapped back if not committed, then dropped: before the app starts.
    done, failed = settle_shadows(client, run.app_id, journal, committed)
    report.done += done
    report.failed += failed
    paused = [c for e in journal if e.get("step") == steps.STOP for c in e.get("paused", [])]
    bring_back(client, was_running, report, paused=paused)  # paused ones paused again
    # A database container that was stopped before the restore was started
    # by it, to load its dump (and by the rollback above): stopped again.
    # One that ran ("running": loaded live, or a --no-stop restore) runs on.
    started_by_restore = [
        e["container"]
        for e in databases
        if e["container"] not in was_running and not e.get("running")
    ]
    if started_by_restore and not committed:
        stop_running(client, started_by_restore, report)


def _roll_back_databases(run: Run, journal: list[dict[str, Any]], report: RecoveryReport) -> None:
    """Databases half restored: load them back from the safety backup."""
    from snapshots.services.restore import roll_back_databases_from

    safety_id = next(
        (e["backup_id"] for e in reversed(journal) if e.get("step") == "safety_backup"), None
    )
    safety = Snapshot.objects.filter(backup_id=safety_id).first() if safety_id else None
    if safety is None or safety.status != Snapshot.Status.COMPLETED:
        report.failed.append(
            "databases were being restored and there is no safety backup to roll them back "
            "from: check them"
        )
        return
    try:
        names = roll_back_databases_from(run, safety)
        report.done += [f"database {name} restored from {safety.backup_id}" for name in names]
    except Exception as exc:
        report.failed.append(f"database rollback from {safety.backup_id}: {exc}")


def _discard_partials(run: Run, report: RecoveryReport) -> None:
    snapshot = run.snapshot
    if snapshot is None:
        return
    key = archive_key(
        snapshot.app_id, snapshot.backup_id, snapshot.compression,  # type: ignore[arg-type]
        snapshot.encrypted,
    )  # fmt: skip
    try:
        storage = get_storage(snapshot.storage_location)
        for swept in storage.discard_partials(key) + storage.discard_partials(f"{key}.sha256"):
            report.done.append(f"removed partial {swept}")
        if snapshot.status != Snapshot.Status.COMPLETED:
            # Killed between the sidecar's commit and the archive's: a file
            # under a final name that no completed snapshot owns.
            for final in (f"{key}.sha256", key):
                if storage.exists(final):
                    storage.delete(final)
                    report.done.append(f"removed {final}")
    except Exception as exc:
        report.failed.append(f"partial files of {snapshot.backup_id}: {exc}")


def _spool_names(run: Run) -> list[str]:
    names = [f"restore-{run.pk}", f"rollback-{run.pk}", f"drill-{run.pk}"]
    if run.snapshot is not None and run.operation == Run.Operation.BACKUP:
        names.append(run.snapshot.backup_id)
    return names


def _remove_spools(run: Run, report: RecoveryReport) -> None:
    for name in _spool_names(run):
        path = Path(settings.BACKUP_SPOOL_DIR) / name
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            report.done.append(f"removed spool {name}")


def sweep_spool() -> list[str]:
    """Spool entries (database dumps: users' data) that no active run owns:
    left by a SIGKILL, which no `finally` survives."""
    spool = Path(settings.BACKUP_SPOOL_DIR)
    if not spool.is_dir():
        return []
    active = Run.objects.filter(state__in=ACTIVE)
    owned = {name for run in active.select_related("snapshot") for name in _spool_names(run)}
    # A pre-restore safety backup spools under its own backup id.
    owned |= set(
        Snapshot.objects.filter(
            status__in=[Snapshot.Status.PENDING, Snapshot.Status.RUNNING]
        ).values_list("backup_id", flat=True)
    )
    swept = []
    for entry in spool.iterdir():
        if entry.name not in owned:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
            swept.append(entry.name)
    return swept


def sweep_partials() -> list[str]:
    swept: list[str] = []
    for name in storage_names():
        # Older than the stale limit: a live writer's temp file has no
        # heartbeat of its own, so keep a generous margin.
        swept += get_storage(name).sweep_partials(older_than_seconds=settings.BACKUP_STALE_SECONDS)
    return swept
