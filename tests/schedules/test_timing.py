"""Due times with explicit instants: daily, weekly, monthly and cron across
timezones, DST changes, the 31st in short months and leap days; the beat
projection's crontab agrees with them (Celery's own crontab is asked)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab

from schedules.timing import (
    InvalidSchedule,
    Timing,
    crontab_fields,
    next_due,
    parse_time,
    period_before,
    previous_due,
    validate,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def daily(hh: int, mm: int, tz: str = "UTC") -> Timing:
    return Timing("daily", time(hh, mm), tz)


def test_daily_in_a_timezone_is_its_local_time() -> None:
    tokyo = daily(2, 30, "Asia/Tokyo")  # UTC+9: 17:30 UTC the day before
    assert next_due(tokyo, utc(2026, 1, 5, 12)) == utc(2026, 1, 5, 17, 30)
    assert previous_due(tokyo, utc(2026, 1, 5, 17, 30)) == utc(2026, 1, 5, 17, 30)
    assert previous_due(tokyo, utc(2026, 1, 5, 17, 29)) == utc(2026, 1, 4, 17, 30)


def test_berlin_summer_and_winter_offsets() -> None:
    t = daily(2, 30, "Europe/Berlin")
    assert next_due(t, utc(2026, 1, 10)) == utc(2026, 1, 10, 1, 30)  # CET +1
    assert next_due(t, utc(2026, 7, 10)) == utc(2026, 7, 10, 0, 30)  # CEST +2


def test_spring_forward_nonexistent_time_runs_shifted_by_the_gap() -> None:
    """2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist. The
    backup runs (not skipped) at 01:30 UTC = 03:30 CEST, and once."""
    t = daily(2, 30, "Europe/Berlin")
    day_before = next_due(t, utc(2026, 3, 28))
    due = next_due(t, day_before)
    assert day_before == utc(2026, 3, 28, 1, 30)
    assert due == utc(2026, 3, 29, 1, 30)
    assert due.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    assert next_due(t, due) == utc(2026, 3, 30, 0, 30)  # back to 02:30 CEST
    # Celery's crontab (what beat computes) says the same instant.
    entry = _celery_crontab(t)
    entry.nowfun = lambda: utc(2026, 3, 29, 1, 30, 1).astimezone(BERLIN)
    assert entry.is_due(day_before.astimezone(BERLIN)).is_due
    entry.nowfun = lambda: utc(2026, 3, 29, 1, 29, 0).astimezone(BERLIN)
    assert not entry.is_due(day_before.astimezone(BERLIN)).is_due


def test_fall_back_repeated_time_runs_once_at_its_first_occurrence() -> None:
    """2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice."""
    t = daily(2, 30, "Europe/Berlin")
    due = next_due(t, utc(2026, 10, 24, 12))
    assert due == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first one
    assert next_due(t, due) == utc(2026, 10, 26, 1, 30)  # next day, CET
    # A firing at the second 02:30 (01:30 UTC) stands for the first: deduped.
    assert previous_due(t, utc(2026, 10, 25, 1, 30, 5)) == due


def test_hourly_runs_at_its_minute_every_real_hour() -> None:
    """The hour of `time` is not used; in a +05:30 zone ":15" is :45 UTC; on
    the fall-back day the repeated hour runs twice, on spring forward the
    missing hour is not run twice."""
    kolkata = Timing("hourly", time(7, 15), "Asia/Kolkata")
    assert next_due(kolkata, utc(2026, 1, 5, 12)) == utc(2026, 1, 5, 12, 45)
    assert previous_due(kolkata, utc(2026, 1, 5, 12, 44)) == utc(2026, 1, 5, 11, 45)
    assert period_before(kolkata, utc(2026, 1, 5, 12, 45)) == timedelta(hours=1)
    berlin = Timing("hourly", time(0, 30), "Europe/Berlin")
    fall_back = [utc(2026, 10, 24, 22, 30)]
    while len(fall_back) < 6:
        fall_back.append(next_due(berlin, fall_back[-1]))
    assert [b - a for a, b in itertools.pairwise(fall_back)] == [
        timedelta(hours=1)
    ] * 5  # 00:30, 01:30, 02:30 CEST, 02:30 CET, 03:30 CET, ...: one an hour
    spring = [utc(2026, 3, 28, 23, 30)]
    while len(spring) < 4:
        spring.append(next_due(berlin, spring[-1]))
    assert spring == [utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30),
                      utc(2026, 3, 29, 2, 30)]  # fmt: skip
    with pytest.raises(InvalidSchedule, match="only for a weekly"):
        validate(Timing("hourly", time(0, 30), "UTC", weekday=1))
    fields = crontab_fields(berlin)
    assert (fields.minute, fields.hour, fields.day_of_week) == ("30", "*", "*")


def test_weekly_on_its_weekday_in_its_timezone() -> None:
    sunday_late = Timing("weekly", time(23, 30), "America/New_York", weekday=6)
    due = next_due(sunday_late, utc(2026, 1, 5, 12))  # Monday noon UTC
    assert due == utc(2026, 1, 12, 4, 30)  # Sunday 23:30 EST = Monday 04:30 UTC
    assert due.astimezone(ZoneInfo("America/New_York")).weekday() == 6
    assert next_due(sunday_late, due) - due == timedelta(days=7)
    assert period_before(sunday_late, due) == timedelta(days=7)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (31, ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]),
        (30, ["2026-01-30", "2026-02-28", "2026-03-30", "2026-04-30", "2026-05-30"]),
        (29, ["2026-01-29", "2026-02-28", "2026-03-29", "2026-04-29", "2026-05-29"]),
        (15, ["2026-01-15", "2026-02-15", "2026-03-15", "2026-04-15", "2026-05-15"]),
    ],
)
def test_monthly_days_the_month_lacks_mean_its_last_day(day: int, expected: list[str]) -> None:
    t = Timing("monthly", time(2, 0), "UTC", day_of_month=day)
    moment, seen = utc(2026, 1, 1), []
    for _ in expected:
        moment = next_due(t, moment)
        seen.append(f"{moment:%Y-%m-%d}")
    assert seen == expected


def test_monthly_31st_in_a_leap_february() -> None:
    t = Timing("monthly", time(2, 0), "Europe/Berlin", day_of_month=31)
    assert next_due(t, utc(2028, 2, 1)) == utc(2028, 2, 29, 1, 0)
    t29 = Timing("monthly", time(2, 0), "UTC", day_of_month=29)
    assert next_due(t29, utc(2028, 2, 1)) == utc(2028, 2, 29, 2, 0)
    assert next_due(t29, utc(2027, 2, 1)) == utc(2027, 2, 28, 2, 0)


def test_cron_leap_day_only() -> None:
    t = Timing("cron", time(0, 0), "UTC", cron_expression="0 6 29 2 *")
    assert next_due(t, utc(2026, 6, 1)) == utc(2028, 2, 29, 6, 0)
    assert previous_due(t, utc(2026, 6, 1)) == utc(2024, 2, 29, 6, 0)


def test_cron_every_minute_and_steps() -> None:
    every = Timing("cron", time(0, 0), "UTC", cron_expression="* * * * *")
    assert previous_due(every, utc(2026, 1, 1, 10, 0, 59)) == utc(2026, 1, 1, 10, 0)
    assert next_due(every, utc(2026, 1, 1, 10, 0, 0)) == utc(2026, 1, 1, 10, 1)
    quarter = Timing("cron", time(0, 0), "Asia/Kolkata", cron_expression="*/15 9-17 * * 1-5")
    # Friday 17:45 IST, then Monday 09:00 IST (03:30 UTC).
    assert next_due(quarter, utc(2026, 1, 9, 12, 15)) == utc(2026, 1, 12, 3, 30)


def test_downtime_means_one_due_time_not_one_per_missed_day() -> None:
    """Beat down from Monday to Thursday: the catch-up firing stands for the
    latest due time only, so one backup runs."""
    t = daily(2, 0)
    assert previous_due(t, utc(2026, 1, 8, 9, 17)) == utc(2026, 1, 8, 2, 0)


def test_monthly_projection_fires_on_28_to_31_and_only_the_right_day_is_due() -> None:
    t = Timing("monthly", time(2, 0), "UTC", day_of_month=31)
    fields = crontab_fields(t)
    assert (fields.day_of_month, fields.hour, fields.minute) == ("28-31", "2", "0")
    # Beat fires on April 28th and 29th: the due time they stand for is
    # March 31st's (already fired: dropped); on the 30th it is the 30th.
    assert previous_due(t, utc(2026, 4, 28, 2, 0, 1)) == utc(2026, 3, 31, 2, 0)
    assert previous_due(t, utc(2026, 4, 30, 2, 0, 1)) == utc(2026, 4, 30, 2, 0)


def _celery_crontab(t: Timing) -> crontab:
    f = crontab_fields(t)
    app = Celery(set_as_current=False)
    app.conf.timezone = t.timezone
    entry = crontab(minute=f.minute, hour=f.hour, day_of_month=f.day_of_month,
                    month_of_year=f.month_of_year, day_of_week=f.day_of_week, app=app)  # fmt: skip
    entry.tz = ZoneInfo(t.timezone)
    return entry


@pytest.mark.parametrize(
    "timing",
    [
        daily(2, 30, "Europe/Berlin"),
        Timing("weekly", time(4, 5), "America/New_York", weekday=0),
        Timing("weekly", time(0, 0), "Pacific/Auckland", weekday=6),
        Timing("monthly", time(1, 15), "Australia/Sydney", day_of_month=10),
        Timing("cron", time(0, 0), "Europe/London", cron_expression="30 1,13 * * 2-4"),
        Timing("hourly", time(0, 15), "Asia/Kolkata"),
    ],
)
def test_projection_agrees_with_celery_crontab_for_a_year(timing: Timing) -> None:
    """Beat's crontab (Celery's arithmetic, in the schedule's timezone) and
    next_due give the same instants, DST changes included."""
    entry = _celery_crontab(timing)
    moment = utc(2026, 1, 1)
    for _ in range(60):
        ours = next_due(timing, moment)
        local = moment.astimezone(entry.tz)
        entry.nowfun = lambda local=local: local
        theirs = (moment + entry.remaining_estimate(local)).astimezone(UTC)
        assert abs((theirs - ours).total_seconds()) < 61, (timing, moment, ours, theirs)
        moment = ours


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"frequency": "fortnightly"}, "frequency", "hourly, daily, weekly, monthly, cron"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"frequency": "weekly", "weekday": 7}, "weekday", "0-6"),
        ({"frequency": "weekly"}, "weekday", "0-6"),
        ({"weekday": 2}, "weekday", "only for a weekly"),
        ({"frequency": "monthly", "day_of_month": 32}, "day_of_month", "1-31"),
        ({"frequency": "monthly", "day_of_month": 0}, "day_of_month", "1-31"),
        ({"frequency": "cron", "cron_expression": "61 * * * *"}, "cron_expression", "61"),
        ({"frequency": "cron", "cron_expression": "* * *"}, "cron_expression", "five fields"),
        ({"cron_expression": "* * * * *"}, "cron_expression", "only for frequency cron"),
    ],
)
def test_validation_names_the_field(fields: dict, field: str, fragment: str) -> None:
    values = {"frequency": "daily", "time": time(2, 0), "timezone": "UTC"} | fields
    with pytest.raises(InvalidSchedule) as caught:
        validate(Timing(**values))
    assert caught.value.field == field
    assert fragment in str(caught.value)


@pytest.mark.parametrize("bad", ["25:00", "2:30", "02:60", "0230", "", "02:30:00", None])
def test_bad_times_are_refused(bad: object) -> None:
    with pytest.raises(InvalidSchedule, match="HH:MM"):
        parse_time(bad)
    assert parse_time("02:30") == time(2, 30)
