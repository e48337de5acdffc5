"""Reads of schedules: lists, one by id, and what each shows (next run,
last run, last result), computed from the firings and their snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from schedules.models import Schedule, ScheduleFiring
from schedules.timing import Timing, next_due
from snapshots.models import Snapshot
from snapshots.selectors import NotFound


@dataclass(frozen=True)
class ScheduleState:
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_result: str | None  # completed | failed | skipped | running | pending; None: never ran
    last_error: str
    last_backup_id: str | None


WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def describe(schedule: Schedule) -> str:
    """The timetable in words."""
    at = f"{schedule.time:%H:%M}" if not isinstance(schedule.time, str) else schedule.time
    tz = schedule.timezone
    if schedule.frequency == Schedule.Frequency.WEEKLY and schedule.weekday is not None:
        return f"every {WEEKDAYS[schedule.weekday]} at {at} {tz}"
    if schedule.frequency == Schedule.Frequency.MONTHLY:
        day = schedule.day_of_month or 31
        which = "the last day" if day == 31 else f"day {day}"
        short = " (or the month's last)" if 28 < day < 31 else ""
        return f"monthly on {which}{short} at {at} {tz}"
    if schedule.frequency == Schedule.Frequency.HOURLY:
        minute = at.split(":")[1]
        return f"hourly at :{minute} {tz}"
    if schedule.frequency == Schedule.Frequency.CRON:
        return f"cron '{schedule.cron_expression}' {tz}"
    return f"daily at {at} {tz}"


def get_schedule(schedule_id: object) -> Schedule:
    try:
        pk = int(str(schedule_id))
    except ValueError:
        raise NotFound("not a schedule id: expected a number") from None
    schedule = Schedule.objects.filter(pk=pk).first()
    if schedule is None:
        raise NotFound(f"no schedule {pk}")
    return schedule


def list_schedules(app_id: str | None = None, host_id: str | None = None) -> list[Schedule]:
    """The schedules (of APP_ID, on HOST_ID: those naming it or no host)."""
    rows = Schedule.objects.all()
    if app_id is not None:
        rows = rows.filter(app_id=app_id)
    if host_id is not None:
        rows = rows.filter(host_id__in=[host_id, ""])
    return list(rows.order_by("app_id", "id"))


def firing_result(firing: ScheduleFiring) -> str:
    """The firing's state, or its snapshot's end when the settle has not
    come yet (the firing row lags the snapshot by one task)."""
    snapshot = firing.snapshot
    ended = (Snapshot.Status.COMPLETED, Snapshot.Status.FAILED)
    if firing.state == ScheduleFiring.State.RUNNING and snapshot and snapshot.status in ended:
        return snapshot.status
    return firing.state


def schedule_state(schedule: Schedule, now: datetime | None = None) -> ScheduleState:
    moment = now or timezone.now()
    upcoming = next_due(Timing.of(schedule), moment) if schedule.enabled else None
    last = (
        ScheduleFiring.objects.select_related("snapshot")
        .filter(schedule=schedule)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        return ScheduleState(upcoming, None, None, "", None)
    result = firing_result(last)
    error = last.error or (last.snapshot.error if last.snapshot and result == "failed" else "")
    return ScheduleState(
        next_run_at=upcoming,
        last_run_at=last.started_at or last.created_at,
        last_result=result,
        last_error=error,
        last_backup_id=last.snapshot.backup_id if last.snapshot else None,
    )


def recent_firings(schedule: Schedule, limit: int = 20) -> list[ScheduleFiring]:
    return list(
        ScheduleFiring.objects.select_related("snapshot")
        .filter(schedule=schedule)
        .order_by("-scheduled_for")[:limit]
    )
