"""Recovery as a duty: each host's worker finishes or undoes its own host's
runs whose worker died, at start and on a timer (snapshots.recover_hosts).

Dead means one thing only: the run's heartbeat is older than the lease, by
the database's clock. No PID, hostname or worker clock is trusted: PIDs
repeat in a restarted container, hostnames change when it is recreated, and
a Celery hard time limit kills the child without any signal reaching us.

For a dead run, recovery takes over the app's lease (a new fence: should
the old worker still be alive, its next step's check fails), then reads the
run's journal (snapshots.run_journal) and puts the app back
(snapshots.recovery_undo says how, for each kind of run).

What recovery did is recorded on the run (result.recovery) and the run is
failed with the reason."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Now

from engine.errors import describe
from snapshots.db_time import db_ago
from snapshots.locks import Lease, lease_seconds, lock_host, take_over_for_recovery
from snapshots.models import AppLock, Run, Snapshot
from snapshots.old_data import sweep_old_data
from snapshots.recovery_undo import sweep_partials, sweep_spool, undo
from snapshots.run_reporter import run_reporter
from snapshots.runs import fail_run, worker_name

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 10  # recovery rounds for a run whose undoing keeps failing


def _silent() -> Q:
    """Runs whose heartbeat stopped a lease ago or more (or never beat)."""
    return Q(heartbeat_at__lt=db_ago(lease_seconds())) | Q(heartbeat_at__isnull=True)


def dead_runs(host_id: str) -> list[Run]:
    """HOST_ID's running runs whose heartbeat stopped a lease ago or more."""
    return list(
        Run.objects.filter(state=Run.State.RUNNING, host_id=host_id)
        .filter(_silent())
        .select_related("snapshot")
    )


def hosts_needing_recovery() -> list[str]:
    hosts = (
        Run.objects.filter(state=Run.State.RUNNING)
        .filter(_silent())
        .exclude(host_id="")
        .values_list("host_id")
    )
    return sorted({host for (host,) in hosts})


def fail_stale_pending() -> list[str]:
    """Runs never picked up (message lost, or no worker on their host's
    queue) are failed after BACKUP_PENDING_TIMEOUT_SECONDS, with their
    snapshots: a pending run must not block its app for ever."""
    stale = Run.objects.filter(
        state=Run.State.PENDING,
        created_at__lt=db_ago(settings.BACKUP_PENDING_TIMEOUT_SECONDS),
    )
    failed: list[str] = []
    for run in stale.select_related("snapshot"):
        reason = (
            f"never started: no worker took this {run.operation} from queue host.{run.host_id} "
            f"within {settings.BACKUP_PENDING_TIMEOUT_SECONDS} s (the message was lost, or no "
            "worker runs on that host)"
        )
        if Run.objects.filter(pk=run.pk, state=Run.State.PENDING).update(
            state=Run.State.FAILED, error=reason, finished_at=Now()
        ):
            _fail_snapshot(run, reason)
            if run.operation == Run.Operation.UPLOAD:
                _fail_stale_upload(run, reason)
            failed.append(str(run.pk))
    return failed


def recover_host(host_id: str | None = None) -> dict[str, Any]:
    """Recover HOST_ID's dead runs (default: this worker's host), then sweep
    this host's spool and half-written files. Safe to run at any time and
    from several workers of the host at once: each run is claimed once."""
    host = host_id or settings.BACKUP_HOST_ID
    recovered: dict[str, Any] = {}
    # Lease holders first: a restore's safety backup dies with its restore,
    # and is recovered once the restore (which holds the lease) has been.
    holders = set(AppLock.objects.held().values_list("run_id", flat=True))
    for run in sorted(dead_runs(host), key=lambda r: r.pk not in holders):
        try:
            outcome = (
                _resume_upload(run) if run.operation == Run.Operation.UPLOAD else recover_run(run)
            )
        except Exception as exc:  # one run's recovery must not stop the others'
            logger.exception("recovery of run %s failed", run.pk)
            outcome = {"error": describe(exc)}
        if outcome is not None:
            recovered[str(run.pk)] = outcome
    from snapshots.recovery_offline import recover_after_offline

    return {
        "host_id": host,
        "recovered_runs": recovered,
        "put_back_after_offline": recover_after_offline(host),
        "failed_pending": fail_stale_pending(),
        "swept_spool": sweep_spool(),
        "swept_partials": sweep_partials(),
        "swept_old_data": sweep_old_data(),
        "swept_drills": _sweep_drills(),
    }


def _sweep_drills() -> list[str]:
    """Containers, volumes and networks of drills that are not running
    (labelled backup-drill: a SIGKILL leaves them). Never fails recovery."""
    from drills.services.leftovers import sweep_drill_leftovers

    try:
        return sweep_drill_leftovers()
    except Exception as exc:
        logger.warning("sweeping drill leftovers failed: %s", describe(exc))
        return []


def _resume_upload(run: Run) -> dict[str, Any] | None:
    """An upload changes no app: resumed where it stopped, not undone."""
    from snapshots.services.offsite_recovery import resume_dead_upload

    return resume_dead_upload(run)


def _fail_stale_upload(run: Run, reason: str) -> None:
    """Its copies fail too (an `s3`-only snapshot with them: see offsite_recovery)."""
    from snapshots.services.offsite_recovery import fail_upload

    fail_upload(run, run.snapshot, reason)


def hand_over(run: Run, lease: Lease, error: str, result: dict[str, Any]) -> None:
    """RUN could not undo its own changes (the Docker engine unreachable in
    the middle of a rollback): it stays `running`, the app busy, and is
    marked dead at once, so its host's next recovery round (and the ones
    after, while steps keep failing) finishes the undoing from its journal."""
    Run.objects.filter(pk=run.pk).update(
        error=f"{error}; this host's recovery retries what was not rolled back",
        result=result, phase="awaiting recovery", heartbeat_at=db_ago(lease_seconds() + 1),
    )  # fmt: skip
    AppLock.objects.filter(
        host_id=lease.host_id, app_id=lease.app_id, token=lease.token, fence=lease.fence
    ).update(expires_at=db_ago(1))


def recover_run(run: Run) -> dict[str, Any] | None:
    """Finish or undo RUN (dead); None if it is not ours to recover (it came
    back to life, or another worker is recovering it)."""
    lease = take_over_for_recovery(run)
    if lease is None:
        holder = AppLock.objects.filter(host_id=lock_host(run.host_id), app_id=run.app_id).first()
        holder_is_dead = (
            holder is not None
            and Run.objects.filter(_silent(), pk=holder.run_id, state=Run.State.RUNNING).exists()
        )
        if holder_is_dead:
            return None  # recovered after the holder, in a later round
        # A live run holds the app: this one lost its lease long ago and
        # stopped at its next check, so none of its steps is left to undo.
        note = f"app lock held by run {holder.run_id if holder else '?'}; nothing undone"
        return _claim_and_fail(
            run, None, {"done": [], "failed": [], "left_for_operator": [note], "retry": False}
        )
    try:
        outcome = _claim_and_fail(run, lease, None)
    except BaseException:
        lease.release()
        raise
    if outcome is None or not outcome.get("retry"):
        lease.release()
    # else: the lease stays with the run and expires; nobody but its
    # recovery can take it while the run is `running`, so the app stays busy.
    return outcome


def _claim_and_fail(
    run: Run, lease: Lease | None, report_json: dict[str, Any] | None
) -> dict[str, Any] | None:
    died_in = (run.result or {}).get("died_in") or run.phase or "no"
    attempts = (run.result or {}).get("recovery_attempts", 0) + 1
    claimed = (
        Run.objects.filter(pk=run.pk, state=Run.State.RUNNING)
        .filter(_silent())
        .update(heartbeat_at=Now(), phase="recovering", worker=worker_name())
    )
    if not claimed:
        return None
    run.refresh_from_db()
    if report_json is None:
        with run_reporter(run, lease=lease):  # heartbeats while we undo
            report = undo(run)
        # A failed step may be a passing fault (the engine restarting): tried
        # again on the next rounds, a bounded number of times.
        report.retry = report.retry or (bool(report.failed) and attempts < MAX_ATTEMPTS)
        report_json = report.to_json()
    reason = f"the worker running this {run.operation} died (in its {died_in} phase)"
    result = {
        **(run.result or {}), "recovery": report_json, "died_in": died_in,
        "recovery_attempts": attempts,
    }  # fmt: skip
    if report_json["retry"]:
        # Left running (and the app busy) until what is in use is free.
        waiting = report_json["left_for_operator"] + report_json["failed"]
        Run.objects.filter(pk=run.pk).update(
            error=f"{reason}; recovery waits and retries: {'; '.join(waiting)}",
            result=result, phase="recovery waiting",
        )  # fmt: skip
        logger.warning("recovery of run %s waits: %s", run.pk, waiting)
        return report_json
    if report_json["failed"] or report_json["left_for_operator"]:
        reason += "; recovery could not put everything back: see result.recovery"
    else:
        reason += "; recovery put the app back"
    fail_run(run, reason, result)
    _fail_snapshot(run, reason)
    logger.warning("recovered run %s of app %s: %s", run.pk, run.app_id, report_json)
    return report_json


def _fail_snapshot(run: Run, reason: str) -> None:
    if run.snapshot_id is None:
        return
    Snapshot.objects.filter(
        pk=run.snapshot_id, status__in=[Snapshot.Status.PENDING, Snapshot.Status.RUNNING]
    ).update(status=Snapshot.Status.FAILED, error=reason, finished_at=Now())
