"""A Schedule's projection onto django-celery-beat: one PeriodicTask named
"schedule-<id>" sending "schedules.fire" [<id>] to the shared queue, with a
CrontabSchedule in the schedule's timezone.

Only services.py calls this, inside the transaction that saves the
Schedule, so the row and its projection change together. A running beat
(DatabaseScheduler) notices through PeriodicTasks.last_update: the
PeriodicTask's save and delete signals bump it, but a queryset .update()
or a CrontabSchedule reused by several tasks would not, so each change
here ends with an explicit PeriodicTasks.update_changed()."""

from __future__ import annotations

import json

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from schedules.models import Schedule
from schedules.timing import Timing, crontab_fields

FIRE_TASK = "schedules.fire"
# Any worker may decide a firing; the backup itself goes to the app's host queue.
FIRE_QUEUE = "default"


def task_name(schedule: Schedule) -> str:
    return f"schedule-{schedule.pk}"


def _crontab(schedule: Schedule) -> CrontabSchedule:
    fields = crontab_fields(Timing.of(schedule))
    values = {
        "minute": fields.minute, "hour": fields.hour, "day_of_month": fields.day_of_month,
        "month_of_year": fields.month_of_year, "day_of_week": fields.day_of_week,
        "timezone": schedule.timezone,
    }  # fmt: skip
    # Rows are shared and never changed (a new timing finds or makes another),
    # so no other task's timing moves; unused ones are left, a few bytes each.
    found = CrontabSchedule.objects.filter(**values).order_by("id").first()
    return found or CrontabSchedule.objects.create(**values)


def project(schedule: Schedule, *, timing_changed: bool = True) -> PeriodicTask:
    """Create or bring up to date SCHEDULE's PeriodicTask (and link it).

    TIMING_CHANGED (a new time, an enable): last_run_at is cleared, so beat
    counts from now (django-celery-beat then uses date_changed) and does not
    fire at once for a time passed while the schedule said something else
    or was disabled. Otherwise it is kept: a beat that was down keeps its
    one catch-up run."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("project() belongs inside the transaction that saves the schedule")
    task = schedule.periodic_task
    if task is None:
        task = PeriodicTask(name=task_name(schedule), task=FIRE_TASK)
    task.crontab = _crontab(schedule)
    task.interval = task.solar = task.clocked = None
    task.args = json.dumps([schedule.pk])
    task.kwargs = "{}"
    task.queue = FIRE_QUEUE
    task.enabled = schedule.enabled
    task.description = f"backup of {schedule.app_id}: {schedule} (edit the schedule, not this)"
    if timing_changed:
        task.last_run_at = None
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        Schedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
    PeriodicTasks.update_changed()
    return task


def unproject(schedule: Schedule) -> None:
    """Remove SCHEDULE's PeriodicTask (before the schedule row goes)."""
    if schedule.periodic_task_id is not None:
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    PeriodicTask.objects.filter(name=task_name(schedule)).delete()
    PeriodicTasks.update_changed()
