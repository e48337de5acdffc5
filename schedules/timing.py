"""When a schedule is due: validation of its time fields, its previous and
next due times, and its crontab projection fields.

One meaning for every caller (the beat projection, the firing task, the
missed-backup alarm, the API's next_run_at), all computed here in the
schedule's own timezone, returned in UTC:

- hourly: every hour at `time`'s minute (its hour is not used: "hourly at
  :15"); in a repeated hour (fall back) both occurrences run, a skipped one
  (spring forward) runs once;
- daily: every day at `time`; weekly: on `weekday` (0 = Monday); monthly: on
  `day_of_month`, where a day the month lacks (29-31) means its last day (31
  = "the last day", 30 in April, 28 or 29 in February);
- cron: a five-field expression as Celery's crontab reads it (minute, hour,
  day of month, month, day of week; day-of-month and day-of-week both
  restricted means both must match, as Celery does);
- DST: a wall time that does not exist on the spring-forward day (02:30 in
  Europe/Berlin) runs that day, shifted forward by the gap (03:30 local, the
  same UTC instant as 02:30 in the old offset): the backup is never skipped,
  and it is the instant Celery's crontab itself computes, so beat and the
  firing agree. A wall time that happens twice (fall back) runs once, at its
  first occurrence.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from celery.schedules import ParseException, crontab

FREQUENCIES = ("hourly", "daily", "weekly", "monthly", "cron")
TIME_PATTERN = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
# Far enough back for "0 0 29 2 1" (Feb 29th on a Monday: once in 28 years).
_SEARCH_DAYS = 366 * 29


class InvalidSchedule(ValueError):
    """A time field is wrong; FIELD names it, the message says how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Timing:
    """The fields that say when (a Schedule's, or a request's before saving)."""

    frequency: str
    time: time
    timezone: str = "UTC"
    weekday: int | None = None
    day_of_month: int | None = None
    cron_expression: str = ""

    @classmethod
    def of(cls, schedule: object) -> Timing:
        return cls(
            frequency=schedule.frequency,  # type: ignore[attr-defined]
            time=parse_time(schedule.time),  # type: ignore[attr-defined]
            timezone=schedule.timezone,  # type: ignore[attr-defined]
            weekday=schedule.weekday,  # type: ignore[attr-defined]
            day_of_month=schedule.day_of_month,  # type: ignore[attr-defined]
            cron_expression=schedule.cron_expression,  # type: ignore[attr-defined]
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# -- validation --------------------------------------------------------------------


def parse_time(value: object) -> time:
    """ "HH:MM" (or a time) as a time with no seconds."""
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0)
    match = TIME_PATTERN.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise InvalidSchedule("time", f"time must be HH:MM (24-hour, e.g. 02:30), got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def validate_timezone(name: object) -> str:
    if not isinstance(name, str) or not name or name not in _zones():
        raise InvalidSchedule(
            "timezone", f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule("timezone", f"unknown timezone {name!r}") from None
    return name


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones() | {"UTC"})
    return _ZONES


def parse_cron(expression: object) -> crontab:
    """A five-field expression as Celery's crontab, or InvalidSchedule."""
    fields = str(expression or "").split()
    if len(fields) != 5:
        raise InvalidSchedule(
            "cron_expression",
            "cron_expression must have five fields (minute hour day-of-month month "
            f"day-of-week), e.g. '30 2 * * *'; got {len(fields)}",
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        parsed = crontab(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month,
            day_of_week=day_of_week,
        )  # fmt: skip
    except (ParseException, ValueError, IndexError) as exc:
        raise InvalidSchedule("cron_expression", f"invalid cron expression: {exc}") from None
    if not parsed.minute or not parsed.hour or not parsed.day_of_month:
        raise InvalidSchedule("cron_expression", "invalid cron expression: a field is empty")
    return parsed


def validate(timing: Timing) -> Timing:
    """TIMING as given, or InvalidSchedule naming the first wrong field. The
    fields a frequency does not use must be empty: a weekday on a daily
    schedule would look meaningful and be ignored."""
    if timing.frequency not in FREQUENCIES:
        raise InvalidSchedule(
            "frequency", f"frequency must be one of {', '.join(FREQUENCIES)}, "
            f"got {timing.frequency!r}"
        )  # fmt: skip
    validate_timezone(timing.timezone)
    weekly, monthly = timing.frequency == "weekly", timing.frequency == "monthly"
    if weekly:
        if not isinstance(timing.weekday, int) or not 0 <= timing.weekday <= 6:
            raise InvalidSchedule(
                "weekday", "a weekly schedule needs weekday 0-6 (0 = Monday, 6 = Sunday)"
            )
    elif timing.weekday is not None:
        raise InvalidSchedule("weekday", "weekday is only for a weekly schedule")
    if monthly:
        if not isinstance(timing.day_of_month, int) or not 1 <= timing.day_of_month <= 31:
            raise InvalidSchedule(
                "day_of_month",
                "a monthly schedule needs day_of_month 1-31 (29-31: the month's last day "
                "in months that have fewer days)",
            )
    elif timing.day_of_month is not None:
        raise InvalidSchedule("day_of_month", "day_of_month is only for a monthly schedule")
    if timing.frequency == "cron":
        parse_cron(timing.cron_expression)
    elif timing.cron_expression:
        raise InvalidSchedule("cron_expression", "cron_expression is only for frequency cron")
    return timing


# -- due times ---------------------------------------------------------------------


def _day_matches(timing: Timing, day: date, cron: crontab | None) -> bool:
    if timing.frequency in ("hourly", "daily"):
        return True
    if timing.frequency == "weekly":
        return day.weekday() == timing.weekday
    if timing.frequency == "monthly":
        last = calendar.monthrange(day.year, day.month)[1]
        return day.day == min(timing.day_of_month or 31, last)
    if cron is None:
        raise ValueError("a cron schedule needs its parsed expression")
    cron_weekday = (day.weekday() + 1) % 7  # cron: 0 = Sunday
    return (
        day.month in cron.month_of_year
        and day.day in cron.day_of_month
        and cron_weekday in cron.day_of_week
    )


def _times(timing: Timing, cron: crontab | None) -> list[time]:
    if timing.frequency == "hourly":
        return [time(hour, timing.time.minute) for hour in range(24)]
    if cron is None:
        return [timing.time]
    return [time(h, m) for h in sorted(cron.hour) for m in sorted(cron.minute)]


def _instants(timing: Timing, day: date, cron: crontab | None) -> list[datetime]:
    """The UTC instants DAY's wall times stand for. fold=0: a nonexistent
    time is read in the offset before the change (shifted forward by the
    gap), a repeated one as its first occurrence."""
    if not _day_matches(timing, day, cron):
        return []
    zone = timing.zone
    folds = (0, 1) if timing.frequency == "hourly" else (0,)
    # A set: on the spring-forward day a nonexistent hour lands on the next one.
    return sorted(
        {
            datetime.combine(day, t, zone).replace(fold=fold).astimezone(UTC)
            for t in _times(timing, cron)
            for fold in folds
        }
    )


def _days(start: date, step: int) -> Iterator[date]:
    for offset in range(_SEARCH_DAYS):
        yield start + timedelta(days=offset * step)


def previous_due(timing: Timing, at: datetime) -> datetime | None:
    """The latest due instant at or before AT (UTC), or None if none in 29 years."""
    cron = parse_cron(timing.cron_expression) if timing.frequency == "cron" else None
    local_day = at.astimezone(timing.zone).date()
    # One day later too: a due time whose wall date is "tomorrow" cannot be
    # before AT, but a DST shift can move an instant across midnight.
    for day in _days(local_day + timedelta(days=1), -1):
        earlier = [instant for instant in _instants(timing, day, cron) if instant <= at]
        if earlier:
            return earlier[-1]
    return None


def next_due(timing: Timing, after: datetime) -> datetime | None:
    """The first due instant strictly after AFTER (UTC)."""
    cron = parse_cron(timing.cron_expression) if timing.frequency == "cron" else None
    local_day = after.astimezone(timing.zone).date()
    for day in _days(local_day - timedelta(days=1), 1):
        later = [instant for instant in _instants(timing, day, cron) if instant > after]
        if later:
            return later[0]
    return None


def period_before(timing: Timing, due: datetime) -> timedelta:
    """How long before DUE the schedule was due the time before (a day for a
    daily schedule, 28-31 days for a monthly one)."""
    before = previous_due(timing, due - timedelta(seconds=1))
    return due - before if before is not None else timedelta(days=1)


# -- the crontab projection ------------------------------------------------------


@dataclass(frozen=True)
class CrontabFields:
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str


def crontab_fields(timing: Timing) -> CrontabFields:
    """What beat's CrontabSchedule says (in the schedule's timezone). Cron
    cannot say "the last day of the month": a monthly day 29-31 fires on the
    28th-31st and the firing keeps only the right day (previous_due decides;
    on other days it finds a time already fired, and drops the message)."""
    if timing.frequency == "cron":
        minute, hour, dom, month, dow = timing.cron_expression.split()
        return CrontabFields(minute, hour, dom, month, dow)
    minute, hour = str(timing.time.minute), str(timing.time.hour)
    if timing.frequency == "hourly":
        return CrontabFields(minute, "*", "*", "*", "*")
    if timing.frequency == "daily":
        return CrontabFields(minute, hour, "*", "*", "*")
    if timing.frequency == "weekly":
        return CrontabFields(minute, hour, "*", "*", str(((timing.weekday or 0) + 1) % 7))
    day = timing.day_of_month or 31
    dom = str(day) if day <= 28 else "28-31"
    return CrontabFields(minute, hour, dom, "*", "*")


def minute_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)
