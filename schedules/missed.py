"""The missed-backup alarm, run by beat on the shared queue every
BACKUP_MISSED_CHECK_SECONDS, so it needs no worker of the app's host: a
dead worker, a stopped host or a broker that lost the message are noticed
the same way, by the absence of a completed snapshot.

A schedule's last due time PREV is missed when, BACKUP_MISSED_GRACE_SECONDS
after it, its app has no completed snapshot in the schedule's storage
location newer than PREV - period + grace (the period being the time
between PREV and the due time before it), i.e. the app went longer without
a good backup than the schedule allows. A backup to another location does
not count: a "monthly to S3" schedule is not kept by the local daily one.
Told once per missed due time: the Notification row of that event, dated
after PREV, is the marker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from schedules.models import Notification, Schedule
from schedules.runner import notify, owed_due
from schedules.selectors import describe
from schedules.timing import Timing, period_before
from snapshots.models import Snapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Missed:
    schedule_id: int
    app_id: str
    due: datetime
    last_success: datetime | None


def missed_due(schedule: Schedule, now: datetime) -> Missed | None:
    """SCHEDULE's last due time if it is missed at NOW, else None."""
    due = owed_due(schedule, now)
    grace = timedelta(seconds=settings.BACKUP_MISSED_GRACE_SECONDS)
    if due is None or now < due + grace:
        return None
    threshold = min(due - period_before(Timing.of(schedule), due) + grace, due)
    completed = Snapshot.objects.filter(
        app_id=schedule.app_id, status=Snapshot.Status.COMPLETED,
        storage_location=schedule.storage_location,
    )  # fmt: skip
    if completed.filter(created_at__gt=threshold).exists():
        return None
    last = completed.order_by("-created_at").values_list("created_at", flat=True).first()
    return Missed(schedule.pk, schedule.app_id, due, last)


def check_missed_backups(now: datetime | None = None) -> list[Missed]:
    """Every enabled schedule's missed due time, each told once."""
    moment = now or timezone.now()
    told: list[Missed] = []
    # A drill schedule makes no backup: nothing of it can be missed here.
    for schedule in Schedule.objects.filter(enabled=True).exclude(action=Schedule.Action.DRILL):
        missed = missed_due(schedule, moment)
        if missed is None:
            continue
        already = Notification.objects.filter(
            event=Notification.Event.BACKUP_MISSED, schedule=schedule, created_at__gte=missed.due
        ).exists()
        if already:
            continue
        since = (
            f"the last completed one is from {missed.last_success:%Y-%m-%d %H:%M} UTC"
            if missed.last_success
            else "it has no completed backup at all"
        )
        logger.warning("schedule %s: backup of %s due %s missed; %s", schedule.pk,
                       schedule.app_id, missed.due, since)  # fmt: skip
        notify(
            Notification.Event.BACKUP_MISSED, schedule,
            f"No backup of {schedule.app_id} since its schedule was due",
            f"The backup due {missed.due:%Y-%m-%d %H:%M} UTC ({describe(schedule)}) has not "
            f"produced a completed snapshot in '{schedule.storage_location}'; {since}. "
            "Is the worker of its host running?",
        )  # fmt: skip
        told.append(missed)
    return told
