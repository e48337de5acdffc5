"""Run rows: claim, progress, finish, and recovery after a worker died.

The row is the truth about an operation. A worker claims a pending run with a
conditional UPDATE (pending → running), so a Celery message delivered twice
(acks_late, a broker reconnect) never runs the same work twice."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from snapshots.models import AppLock, Run, Snapshot

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_run(run_id: str) -> Run | None:
    """The run, now ours and running; None if someone else has (or had) it."""
    now = timezone.now()
    claimed = Run.objects.filter(pk=run_id, state=Run.State.PENDING).update(
        state=Run.State.RUNNING, started_at=now, heartbeat_at=now, worker=worker_name(),
        host_id=settings.BACKUP_HOST_ID,
    )  # fmt: skip
    return Run.objects.select_related("snapshot").get(pk=run_id) if claimed else None


def finish_run(run: Run, result: dict[str, Any]) -> None:
    run.state = Run.State.COMPLETED
    run.result = result
    run.finished_at = timezone.now()
    run.phase = "done"
    run.save(update_fields=["state", "result", "finished_at", "phase"])


def fail_run(run: Run, error: str, result: dict[str, Any] | None = None) -> None:
    run.state = Run.State.FAILED
    run.error = error
    run.finished_at = timezone.now()
    if result is not None:
        run.result = result
    run.save(update_fields=["state", "error", "finished_at", "result"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_runs() -> list[Run]:
    """Fail the runs whose worker is gone, with their snapshots and locks.

    Dead means: claimed by a process of this machine that no longer exists,
    or silent for longer than BACKUP_STALE_SECONDS anywhere. Called when a
    worker starts and by `manage.py backup cleanup`."""
    hostname = socket.gethostname()
    stale_before = timezone.now() - timedelta(seconds=settings.BACKUP_STALE_SECONDS)
    candidates = Run.objects.filter(state=Run.State.RUNNING).filter(
        Q(worker__startswith=f"{hostname}:") | Q(heartbeat_at__lt=stale_before)
    )
    recovered: list[Run] = []
    for run in candidates.select_related("snapshot"):
        host, _, pid = run.worker.rpartition(":")
        local_and_alive = host == hostname and pid.isdigit() and _pid_alive(int(pid))
        fresh = run.heartbeat_at is not None and run.heartbeat_at >= stale_before
        if local_and_alive and fresh:
            continue
        reason = f"worker {run.worker or '?'} died while the {run.operation} was running"
        fail_run(run, reason)
        if run.snapshot and run.snapshot.status in (
            Snapshot.Status.PENDING,
            Snapshot.Status.RUNNING,
        ):
            Snapshot.objects.filter(pk=run.snapshot.pk).update(
                status=Snapshot.Status.FAILED, error=reason, finished_at=timezone.now()
            )
        AppLock.objects.filter(run=run).delete()
        recovered.append(run)
        logger.warning("recovered dead run %s: %s", run.pk, reason)
    return recovered
