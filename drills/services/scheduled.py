"""Schedules whose action is `drill`: a firing drills the app's latest
completed snapshot, and takes the drill's outcome when it ends."""

from __future__ import annotations

from django.utils import timezone

from drills.models import Drill
from drills.selectors import latest_snapshot, no_snapshot_to_drill
from drills.services.requests import start_drill
from engine.errors import EngineError
from schedules.models import Schedule, ScheduleFiring

_FIRING_STATE = {
    Drill.Outcome.PASSED: ScheduleFiring.State.COMPLETED,
    Drill.Outcome.FAILED: ScheduleFiring.State.FAILED,
    Drill.Outcome.SKIPPED: ScheduleFiring.State.SKIPPED,
}


def start_scheduled_drill(firing: ScheduleFiring, schedule: Schedule) -> ScheduleFiring:
    snapshot = latest_snapshot(schedule.app_id)
    firing.started_at = timezone.now()
    if snapshot is None:
        firing.state, firing.finished_at = ScheduleFiring.State.SKIPPED, timezone.now()
        firing.error = no_snapshot_to_drill(schedule.app_id)
        firing.save(update_fields=["state", "error", "started_at", "finished_at"])
        return firing
    try:
        drill = start_drill(snapshot, schedule_id=schedule.pk)
    except EngineError as exc:
        firing.state, firing.finished_at = ScheduleFiring.State.FAILED, timezone.now()
        firing.error = f"the drill could not be started: {exc}"
        firing.save(update_fields=["state", "error", "started_at", "finished_at"])
        return firing
    firing.state, firing.run_id, firing.snapshot = ScheduleFiring.State.RUNNING, drill.pk, snapshot
    firing.save(update_fields=["state", "run_id", "snapshot", "started_at"])
    return firing


def settle_drill_firing(drill: Drill) -> None:
    """The firing that started DRILL (if any) takes its outcome, once."""
    if drill.schedule_id is None or drill.outcome not in _FIRING_STATE:
        return
    ScheduleFiring.objects.filter(run_id=drill.pk, state=ScheduleFiring.State.RUNNING).update(
        state=_FIRING_STATE[drill.outcome],
        error="" if drill.outcome == Drill.Outcome.PASSED else drill.reason,
        finished_at=timezone.now(),
    )
