"""The drill's Celery task: thin, takes the drill id (= run id = task id)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from drills import conf
from drills.models import Drill
from drills.services.run import run_drill
from engine.errors import Terminated
from snapshots.tasks import _task_progress
from snapshots.worker_shutdown import operation


# acks_late: a drill only reads the archive and makes throwaway containers,
# so a redelivery is harmless (the run's claim makes it a no-op anyway).
# The soft limit is the drill's own limit: the finally blocks remove the
# sandbox; the hard limit after it, cleanup's label sweep.
@shared_task(
    bind=True, name="drills.run_drill", acks_late=True,
    soft_time_limit=conf.time_limit_seconds() + 60, time_limit=conf.time_limit_seconds() + 300,
)  # fmt: skip
def run_drill_task(self: Task, drill_id: str) -> dict[str, Any]:
    try:
        with operation():
            drill = run_drill(drill_id, on_progress=_task_progress(self))
    except Terminated:
        drill = Drill.objects.get(pk=drill_id)
    return {"outcome": drill.outcome, "reason": drill.reason, "state": drill.state}
