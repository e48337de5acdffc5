"""Celery tasks of the snapshots app: thin wrappers that take ids, load rows
and call services. Names are explicit and stable because django-celery-beat
stores them as strings."""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready
from django.conf import settings

from engine.errors import Terminated
from engine.progress import Progress
from snapshots.models import Run
from snapshots.recovery import fail_stale_pending, hosts_needing_recovery, recover_host
from snapshots.recovery_offline import fail_runs_of_offline_host, host_is_offline
from snapshots.services.backup import run_backup
from snapshots.services.restore import run_restore
from snapshots.services.verify import run_verify
from snapshots.tasks_offsite import upload_snapshot_task  # noqa: F401 - registers it
from snapshots.worker_shutdown import operation

logger = logging.getLogger(__name__)


@shared_task(name="snapshots.ping")
def ping(payload: str = "") -> dict[str, str]:
    """Echo PAYLOAD with the host that answered: proves a worker is alive and
    on which Docker host it runs."""
    return {
        "payload": payload,
        "host_id": settings.BACKUP_HOST_ID,
        "hostname": socket.gethostname(),
    }


def _task_progress(task: Task) -> Any:
    """A sink for the run's progress relay. It runs on the relay's thread,
    where Celery's thread-local request is empty: the task id is taken here,
    on the task's own thread."""
    task_id = task.request.id

    def report(progress: Progress) -> None:
        task.update_state(
            task_id=task_id,
            state="PROGRESS",
            meta={"phase": progress.phase, "bytes_done": progress.bytes_done,
                  "bytes_total": progress.bytes_total},
        )  # fmt: skip

    return report


# A worker shutting down ends these three through operation(): the run is
# failed "stopped by SIGTERM" and the task returns like any failed one.


# Not acks_late: a backup is not idempotent mid-way; the run row's claim makes
# a redelivered message harmless, and recovery fails runs of dead workers.
@shared_task(bind=True, name="snapshots.create_backup")
def create_backup_task(self: Task, run_id: str) -> dict[str, Any]:
    try:
        with operation():
            snapshot = run_backup(run_id, on_progress=_task_progress(self))
    except Terminated:
        snapshot = Run.objects.select_related("snapshot").get(pk=run_id).snapshot
    return {"backup_id": snapshot.backup_id, "status": snapshot.status, "error": snapshot.error}


# Verification only reads: safe to redeliver, so acks_late.
@shared_task(bind=True, name="snapshots.verify_snapshot", acks_late=True)
def verify_snapshot_task(self: Task, run_id: str) -> dict[str, Any]:
    try:
        with operation():
            run = run_verify(run_id, on_progress=_task_progress(self))
    except Terminated:
        run = Run.objects.get(pk=run_id)
    return {"state": run.state, "result": run.result, "error": run.error}


# Not acks_late: a restore half done must not start again on redelivery.
@shared_task(bind=True, name="snapshots.restore_backup")
def restore_backup_task(self: Task, run_id: str) -> dict[str, Any]:
    try:
        with operation():
            run = run_restore(run_id, on_progress=_task_progress(self))
    except Terminated:
        run = Run.objects.get(pk=run_id)
    return {"state": run.state, "result": run.result, "error": run.error}


@shared_task(name="snapshots.cleanup")
def cleanup_task() -> dict[str, Any]:
    return cleanup()


def cleanup() -> dict[str, Any]:
    """This host's recovery (`backup cleanup`, and each worker at start):
    finish or undo its dead runs, fail runs never picked up, sweep spool
    and half-written files. Never touches a live run."""
    return recover_host(settings.BACKUP_HOST_ID)


@shared_task(name="snapshots.recover_host")
def recover_host_task(host_id: str) -> dict[str, Any]:
    """Sent to host.<HOST_ID>: only a worker on that host can put its
    containers and volumes back."""
    return recover_host(host_id)


@shared_task(name="snapshots.recover_hosts")
def recover_hosts_task() -> dict[str, Any]:
    """Beat runs this on the shared queue every BACKUP_RECOVERY_INTERVAL_SECONDS:
    it fails runs never picked up and sends each host with dead runs its
    own recovery. A hard time limit kills only the task's process, and no
    worker start follows: this timer is what recovers such a run."""
    failed = fail_stale_pending()
    hosts = hosts_needing_recovery()
    offline: dict[str, list[str]] = {}
    for host in hosts:
        if host_is_offline(host):
            # No worker there to recover them: failed here, locks released;
            # the host's worker puts the apps back when it runs again.
            offline[host] = fail_runs_of_offline_host(host)
        else:
            recover_host_task.apply_async(args=[host], queue=f"host.{host}")
    return {"failed_pending": failed, "hosts": hosts, "failed_offline": offline}


@worker_ready.connect
def _recover_on_worker_start(**_: Any) -> None:
    """A worker that starts again after a crash recovers what its host left.
    An error here is logged: the worker must start all the same."""
    try:
        cleanup()
    except Exception:
        logger.exception("recovery at worker start failed; the periodic recovery retries")
