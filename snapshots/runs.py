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

from snapshots.models import Run


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_run(run_id: str) -> Run | None:
    """The run, now ours and running; None if someone else has (or had) it."""
    claimed = Run.objects.filter(pk=run_id, state=Run.State.PENDING).update(
        state=Run.State.RUNNING, started_at=Now(), heartbeat_at=Now(), worker=worker_name(),
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
