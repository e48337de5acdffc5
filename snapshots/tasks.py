"""Celery tasks of the snapshots app: thin wrappers that take ids, load rows
and call services. Names are explicit and stable because django-celery-beat
stores them as strings."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready
from django.conf import settings

from engine.backup import archive_key
from engine.docker_client import connect
from engine.progress import Progress
from engine.restore.volume_swap import recover_volume
from snapshots.models import Run
from snapshots.runs import recover_dead_runs
from snapshots.services.backup import run_backup
from snapshots.services.restore import run_restore
from snapshots.services.verify import run_verify
from snapshots.storage_locations import get_storage, storage_names


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


# Not acks_late: a backup is not idempotent mid-way; the run row's claim makes
# a redelivered message harmless, and recovery fails runs of dead workers.
@shared_task(bind=True, name="snapshots.create_backup")
def create_backup_task(self: Task, run_id: str) -> dict[str, Any]:
    snapshot = run_backup(run_id, on_progress=_task_progress(self))
    return {"backup_id": snapshot.backup_id, "status": snapshot.status, "error": snapshot.error}


# Verification only reads: safe to redeliver, so acks_late.
@shared_task(bind=True, name="snapshots.verify_snapshot", acks_late=True)
def verify_snapshot_task(self: Task, run_id: str) -> dict[str, Any]:
    run = run_verify(run_id, on_progress=_task_progress(self))
    return {"state": run.state, "result": run.result, "error": run.error}


# Not acks_late: a restore half done must not start again on redelivery.
@shared_task(bind=True, name="snapshots.restore_backup")
def restore_backup_task(self: Task, run_id: str) -> dict[str, Any]:
    run = run_restore(run_id, on_progress=_task_progress(self))
    return {"state": run.state, "result": run.result, "error": run.error}


@shared_task(name="snapshots.cleanup")
def cleanup_task() -> dict[str, Any]:
    return cleanup()


def cleanup() -> dict[str, Any]:
    """Fail the runs of dead workers, put back the volumes of their restores,
    and sweep half-written files."""
    recovered = recover_dead_runs()
    swept: list[str] = []
    for run in recovered:
        # The dead writer's temp files are known exactly: remove them now
        # rather than wait for them to age.
        snapshot = run.snapshot
        if run.operation == Run.Operation.BACKUP and snapshot is not None:
            key = archive_key(
                snapshot.app_id, snapshot.backup_id, snapshot.compression,  # type: ignore[arg-type]
                snapshot.encrypted,
            )  # fmt: skip
            storage = get_storage(snapshot.storage_location)
            swept += storage.discard_partials(key) + storage.discard_partials(f"{key}.sha256")
    volumes: list[str] = []
    for run in recovered:
        if run.operation == Run.Operation.RESTORE:
            volumes += _recover_volumes(run.app_id)
    for name in storage_names():
        # Older than the stale limit: a live writer refreshes its heartbeat,
        # but its temp file has no heartbeat, so keep a generous margin.
        swept += get_storage(name).sweep_partials(older_than_seconds=settings.BACKUP_STALE_SECONDS)
    return {
        "recovered_runs": [str(run.pk) for run in recovered],
        "recovered_volumes": volumes,
        "swept_partials": swept,
    }


def _recover_volumes(app_id: str) -> list[str]:
    """A restore died mid-swap: put each volume of its app back in a clean
    state (old data back if the swap was not committed). Only for apps whose
    restore run is known dead, so a live restore is never disturbed."""
    client = connect(settings.DOCKER_HOST)
    label = f"com.docker.compose.project={app_id}"
    outcomes = []
    for volume in client.volumes.list(filters={"label": label}):
        volume_dir = Path(volume.attrs["Mountpoint"]).parent
        outcomes.append(f"{volume.name}: {recover_volume(volume_dir)}")
    return outcomes


@worker_ready.connect
def _recover_on_worker_start(**_: Any) -> None:
    """A worker that starts again after a crash cleans up what it left."""
    cleanup()
