"""Run rows: claim and finish. Progress: snapshots.run_reporter; recovery
after a worker died: snapshots.recovery.

The row is the truth about an operation. A worker claims a pending run with a
conditional UPDATE (pending → running), so a Celery message delivered twice
(acks_late, a broker reconnect) never runs the same work twice."""

from __future__ import annotations

import os
import socket
from typing import Any

from django.conf import settings
from django.db.models.functions import Now
from django.utils import timezone

from monitoring import log_context
from snapshots.models import Run


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_run(run_id: str) -> Run | None:
    """The run, now ours and running; None if someone else has (or had) it.
    Every run starts here, so from here on every log record of this thread
    carries the run's ids (monitoring/log_context.py)."""
    claimed = Run.objects.filter(pk=run_id, state=Run.State.PENDING).update(
        state=Run.State.RUNNING, started_at=Now(), heartbeat_at=Now(), worker=worker_name(),
        host_id=settings.BACKUP_HOST_ID,
    )  # fmt: skip
    if not claimed:
        return None
    run = Run.objects.select_related("snapshot").get(pk=run_id)
    log_context.push(run_id=run.pk, app_id=run.app_id, host_id=run.host_id)
    return run


def finish_run(run: Run, result: dict[str, Any]) -> None:
    run.state = Run.State.COMPLETED
    run.result = result
    run.finished_at = timezone.now()
    run.phase = "done"
    run.save(update_fields=["state", "result", "finished_at", "phase"])
    log_context.pop_run(run.pk)


def fail_run(run: Run, error: str, result: dict[str, Any] | None = None) -> None:
    run.state = Run.State.FAILED
    run.error = error
    run.finished_at = timezone.now()
    if result is not None:
        run.result = result
    run.save(update_fields=["state", "error", "finished_at", "result"])
    log_context.pop_run(run.pk)
