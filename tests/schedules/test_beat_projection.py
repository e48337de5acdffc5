"""The projection onto django-celery-beat: one PeriodicTask per schedule,
its CrontabSchedule in the schedule's timezone, kept in step on create,
update, enable, disable and delete, each change announced through
PeriodicTasks (what a running DatabaseScheduler polls)."""

from __future__ import annotations

import json
from datetime import time

import pytest
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from django_celery_beat.schedulers import ModelEntry

from backup_project.celery import app as celery_app
from schedules import services
from schedules.models import Schedule
from tests.schedules.conftest import MakeSchedule

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def task_of(schedule: Schedule) -> PeriodicTask:
    schedule.refresh_from_db()
    assert schedule.periodic_task_id is not None
    return PeriodicTask.objects.select_related("crontab").get(pk=schedule.periodic_task_id)


def test_create_projects_one_task_with_ids_only_on_the_shared_queue(
    make_schedule: MakeSchedule,
) -> None:
    before = PeriodicTasks.last_change()
    schedule = make_schedule(frequency="weekly", weekday=6, time="23:45", timezone="Asia/Tokyo")
    task = task_of(schedule)
    assert task.name == f"schedule-{schedule.pk}"
    assert task.task == "schedules.fire"
    assert json.loads(task.args) == [schedule.pk]
    assert json.loads(task.kwargs) == {}
    assert task.queue == "default" and task.enabled
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_week, cron.day_of_month) == ("45", "23", "0", "*")
    assert str(cron.timezone) == "Asia/Tokyo"
    assert PeriodicTasks.last_change() is not None
    assert before is None or PeriodicTasks.last_change() > before
    # What beat builds from the row: a crontab in Tokyo's time.
    entry = ModelEntry(task, app=celery_app)
    assert str(entry.schedule.tz) == "Asia/Tokyo"
    assert entry.options["queue"] == "default"


def test_update_enable_disable_delete_keep_the_task_in_step(make_schedule: MakeSchedule) -> None:
    schedule = make_schedule(time="02:00")
    changes = [PeriodicTasks.last_change()]

    schedule = services.update_schedule(schedule, {"frequency": "monthly", "day_of_month": 31})
    task = task_of(schedule)
    assert (task.crontab.day_of_month, task.crontab.hour) == ("28-31", "2")
    assert task.last_run_at is None  # a new timing counts from now
    changes.append(PeriodicTasks.last_change())

    services.set_enabled(schedule, False)
    assert not task_of(schedule).enabled
    changes.append(PeriodicTasks.last_change())
    services.set_enabled(schedule, True)
    assert task_of(schedule).enabled
    changes.append(PeriodicTasks.last_change())

    schedule = services.update_schedule(schedule, {"timezone": "Europe/Berlin", "time": "04:10"})
    cron = task_of(schedule).crontab
    assert (cron.minute, cron.hour, str(cron.timezone)) == ("10", "4", "Europe/Berlin")
    changes.append(PeriodicTasks.last_change())
    assert changes == sorted(changes) and len(set(changes)) == len(changes)

    task_pk = schedule.periodic_task_id
    services.delete_schedule(schedule)
    assert not PeriodicTask.objects.filter(pk=task_pk).exists()
    assert not Schedule.objects.filter(pk=schedule.pk).exists()
    assert PeriodicTasks.last_change() > changes[-1]


def test_a_change_not_about_timing_keeps_last_run_at(make_schedule: MakeSchedule) -> None:
    """A beat that was down keeps its one catch-up run when only, say, the
    retention changed meanwhile."""
    schedule = make_schedule(time="02:00")
    task = task_of(schedule)
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at="2026-01-01T02:00:00Z")
    services.update_schedule(schedule, {"retention_days": 30})
    assert task_of(schedule).last_run_at is not None
    services.update_schedule(schedule, {"time": time(3, 0)})
    assert task_of(schedule).last_run_at is None


def test_invalid_update_changes_nothing(make_schedule: MakeSchedule) -> None:
    schedule = make_schedule(time="02:00")
    with pytest.raises(services.ScheduleInvalid) as caught:
        services.update_schedule(schedule, {"time": "03:00", "timezone": "Nowhere/Land"})
    assert set(caught.value.errors) == {"timezone"}
    schedule.refresh_from_db()
    assert f"{schedule.time:%H:%M}" == "02:00" and schedule.timezone == "UTC"
    assert task_of(schedule).crontab.hour == "2"
