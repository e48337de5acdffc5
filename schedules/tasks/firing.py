"""Celery tasks of scheduled backups: thin wrappers over schedules.runner
and schedules.missed. Messages carry ids only; every task runs on the
shared queue "default" (the backup itself goes to the app's host queue)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from schedules import missed, runner


@shared_task(name="schedules.fire")
def fire(schedule_id: int) -> dict[str, Any]:
    """Sent by beat (PeriodicTask "schedule-<id>", args [<id>])."""
    firing = runner.fire(int(schedule_id))
    if firing is None:
        return {"schedule_id": schedule_id, "fired": False}
    return {"schedule_id": schedule_id, "fired": True, "firing_id": firing.pk,
            "scheduled_for": firing.scheduled_for.isoformat(), "state": firing.state}  # fmt: skip


@shared_task(name="schedules.start_firing")
def start_firing(firing_id: int) -> dict[str, Any]:
    """A firing after its jitter, or again while its app is busy."""
    firing = runner.start(int(firing_id))
    return {"firing_id": firing_id, "state": firing.state if firing else None}


@shared_task(name="schedules.settle_firing")
def settle_firing(firing_id: int) -> dict[str, Any]:
    """Linked to the scheduled backup's task: runs when it ends."""
    return {"firing_id": firing_id, "state": runner.settle(int(firing_id))}


@shared_task(name="schedules.check_missed_backups")
def check_missed_backups() -> dict[str, Any]:
    """Beat runs this every BACKUP_MISSED_CHECK_SECONDS; it also settles
    firings whose backup ended without its link running."""
    settled = runner.settle_open_firings()
    told = missed.check_missed_backups()
    return {"settled": settled, "missed": [m.schedule_id for m in told]}
