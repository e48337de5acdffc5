"""Requesting a drill: the Run (operation "drill": GET tasks/<id> follows
it) and the Drill row share one id, which is also the Celery task id."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from backup_project.celery import app as celery_app
from drills.models import Drill
from engine.errors import EngineError
from snapshots.models import Run, Snapshot
from snapshots.selectors import Conflict
from snapshots.services.snapshots import QueueUnavailable, task_queue

logger = logging.getLogger(__name__)

DRILL_TASK = "drills.run_drill"
DRILL_OPERATION = "drill"  # a Run operation of its own (not one of snapshots' choices)


class NotDrillable(Conflict, EngineError):
    """The snapshot cannot be drilled (not completed); nothing was created.
    A Conflict: the API answers 409."""


def request_drill(snapshot: Snapshot, schedule_id: int | None = None) -> Drill:
    if snapshot.status != Snapshot.Status.COMPLETED:
        raise NotDrillable(
            f"snapshot {snapshot.backup_id} is {snapshot.status}: only a completed snapshot "
            "can be drilled"
        )
    with transaction.atomic():
        run = Run.objects.create(
            operation=DRILL_OPERATION, app_id=snapshot.app_id, snapshot=snapshot,
            host_id=settings.BACKUP_HOST_ID, options={"schedule_id": schedule_id},
        )  # fmt: skip
        return Drill.objects.create(
            id=run.pk, run=run, snapshot=snapshot, backup_id=snapshot.backup_id,
            app_id=snapshot.app_id, host_id=settings.BACKUP_HOST_ID, schedule_id=schedule_id,
        )  # fmt: skip


def start_drill(snapshot: Snapshot, schedule_id: int | None = None) -> Drill:
    """Request a drill and queue its task to this host's worker once committed."""
    with transaction.atomic():
        drill = request_drill(snapshot, schedule_id)
        transaction.on_commit(lambda: _send(drill))
    return drill


def _send(drill: Drill) -> None:
    try:
        celery_app.send_task(
            DRILL_TASK, args=[str(drill.pk)], task_id=str(drill.pk), queue=task_queue()
        )
    except Exception as exc:  # kombu raises many types for "no broker"
        reason = f"could not queue the drill ({type(exc).__name__}); is the broker running?"
        logger.error("drill %s: %s", drill.pk, reason)
        Run.objects.filter(pk=drill.pk).update(state=Run.State.FAILED, error=reason)
        Drill.objects.filter(pk=drill.pk).update(
            state=Drill.State.FINISHED, outcome=Drill.Outcome.FAILED, reason=reason
        )
        raise QueueUnavailable(reason) from exc
