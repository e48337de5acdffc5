"""The upload task: copies a completed snapshot off-site (snapshots.services.offsite)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from engine.errors import Terminated
from snapshots.models import Run
from snapshots.services.offsite import run_upload
from snapshots.worker_shutdown import operation


# Not acks_late: the run row's claim makes a redelivered message harmless,
# and a run whose worker died is resumed by this host's recovery.
@shared_task(bind=True, name="snapshots.upload_snapshot")
def upload_snapshot_task(self: Task, run_id: str) -> dict[str, Any]:
    from snapshots.tasks import _task_progress

    try:
        with operation():
            run = run_upload(run_id, on_progress=_task_progress(self))
    except Terminated:
        run = Run.objects.get(pk=run_id)
    return {"state": run.state, "result": run.result, "error": run.error}
