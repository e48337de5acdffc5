"""Requesting a drill: the Run (operation "drill": GET tasks/<id> follows
it) and the Drill row share one id, which is also the Celery task id."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from backup_project.celery import app as celery_app
from drills.models import Drill
from engine.errors import EngineError
from fleet.errors import AppOnManyHosts
from fleet.routing import route_app_or_bound, route_bound
from snapshots.models import Run, Snapshot
from snapshots.selectors import Conflict
from snapshots.services.snapshots import QueueUnavailable, task_queue
from snapshots.storage_locations import keeps_local_copy

logger = logging.getLogger(__name__)

DRILL_TASK = "drills.run_drill"
DRILL_OPERATION = "drill"  # a Run operation of its own (not one of snapshots' choices)


class NotDrillable(Conflict, EngineError):
    """The snapshot cannot be drilled (not completed); nothing was created.
    A Conflict: the API answers 409."""


def request_drill(
    snapshot: Snapshot, schedule_id: int | None = None, host_id: str | None = None
) -> Drill:
    """The drill's rows, on HOST_ID (default this host: the CLI runs it here)."""
    host_id = host_id or settings.BACKUP_HOST_ID
    if snapshot.status != Snapshot.Status.COMPLETED:
        raise NotDrillable(
            f"snapshot {snapshot.backup_id} is {snapshot.status}: only a completed snapshot "
            "can be drilled"
        )
    with transaction.atomic():
        run = Run.objects.create(
            operation=DRILL_OPERATION, app_id=snapshot.app_id, snapshot=snapshot,
            host_id=host_id, options={"schedule_id": schedule_id},
        )  # fmt: skip
        return Drill.objects.create(
            id=run.pk, run=run, snapshot=snapshot, backup_id=snapshot.backup_id,
            app_id=snapshot.app_id, host_id=host_id, schedule_id=schedule_id,
        )  # fmt: skip


def drill_host(snapshot: Snapshot) -> str:
    """The online host a drill of SNAPSHOT runs on: the one holding it when
    it has a local copy (only that disk has the archive); else the app's
    host by the inventory (its database image is there), or the host that
    made it. Refused at once (HostOffline, UnknownHost) rather than queued
    for a worker that is not there."""
    if keeps_local_copy(snapshot.storage_location):
        return route_bound(snapshot.host_id)
    try:
        return route_app_or_bound(snapshot.app_id, snapshot.host_id)
    except AppOnManyHosts:
        return route_bound(snapshot.host_id)


def start_drill(snapshot: Snapshot, schedule_id: int | None = None) -> Drill:
    """Request a drill and queue its task to its host's worker once committed."""
    if snapshot.status != Snapshot.Status.COMPLETED:
        request_drill(snapshot, schedule_id)  # raises NotDrillable before the host is looked up
    host_id = drill_host(snapshot)
    with transaction.atomic():
        drill = request_drill(snapshot, schedule_id, host_id=host_id)
        transaction.on_commit(lambda: _send(drill))
    return drill


def _send(drill: Drill) -> None:
    try:
        celery_app.send_task(
            DRILL_TASK, args=[str(drill.pk)], task_id=str(drill.pk), queue=task_queue(drill.host_id)
        )
    except Exception as exc:  # kombu raises many types for "no broker"
        reason = f"could not queue the drill ({type(exc).__name__}); is the broker running?"
        logger.error("drill %s: %s", drill.pk, reason)
        Run.objects.filter(pk=drill.pk).update(state=Run.State.FAILED, error=reason)
        Drill.objects.filter(pk=drill.pk).update(
            state=Drill.State.FINISHED, outcome=Drill.Outcome.FAILED, reason=reason
        )
        raise QueueUnavailable(reason) from exc
