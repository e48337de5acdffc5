"""A firing, run in this process with the real clock, database and Docker
engine (the tasks are thin wrappers over these functions; the end-to-end
test runs them in real beat and worker processes): one firing per
scheduled time, a catch-up after downtime stands for the latest due time
only, a busy app is skipped after the wait, a disabled schedule does not
fire, and the firing takes the end state of its real backup."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from schedules import runner
from schedules.models import Notification, Schedule, ScheduleFiring
from schedules.selectors import schedule_state
from snapshots.models import Run, Snapshot
from snapshots.services.backup import request_backup, run_backup
from tests.schedules.conftest import MakeSchedule

pytestmark = [pytest.mark.django_db, pytest.mark.docker]
# A target so notify() writes its row (delivery is queued after commit,
# which these transaction-wrapped tests never reach: nothing is sent).
TARGET = ["json://127.0.0.1:9/hook"]


def every_minute(make_schedule: MakeSchedule, **values: Any) -> Schedule:
    schedule = make_schedule(frequency="cron", cron_expression="* * * * *",
                             notification_targets=TARGET, **values)  # fmt: skip
    # Saved a while ago: the current minute's due time is owed.
    Schedule.objects.filter(pk=schedule.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    schedule.refresh_from_db()
    return schedule


def wait_out_a_minute_boundary(margin_seconds: float = 10.0) -> None:
    """Both messages must reach fire() within one minute: near the end of
    a minute, wait for the next one (CI once saw the first message at
    :59.98 and the check at :00.004, a minute apart)."""
    now = timezone.now()
    left = 60 - (now.second + now.microsecond / 1e6)
    if left < margin_seconds:
        time.sleep(left + 0.05)


def test_two_messages_for_one_scheduled_time_make_one_firing(make_schedule: MakeSchedule) -> None:
    schedule = every_minute(make_schedule)
    wait_out_a_minute_boundary()
    before = timezone.now()
    first = runner.fire(schedule.pk)
    second = runner.fire(schedule.pk)
    assert first is not None and second is None
    assert first.scheduled_for == before.replace(second=0, microsecond=0)
    assert first.state == ScheduleFiring.State.RUNNING
    assert ScheduleFiring.objects.filter(schedule=schedule).count() == 1
    snapshot = Snapshot.objects.get(pk=first.snapshot_id)
    assert snapshot.purpose == Snapshot.Purpose.SCHEDULED
    assert snapshot.storage_location == schedule.storage_location
    assert Run.objects.get(pk=first.run_id).state == Run.State.PENDING


def test_an_incremental_schedule_asks_for_an_incremental(make_schedule: MakeSchedule) -> None:
    schedule = every_minute(make_schedule, backup_type=Schedule.BackupType.INCREMENTAL)
    firing = runner.fire(schedule.pk)
    assert firing is not None
    # Asked for; the run decides under the app's lock (snapshots.services.chain).
    assert Run.objects.get(pk=firing.run_id).options["backup_type"] == "incremental"


def test_after_downtime_one_catch_up_for_the_latest_due_time(make_schedule: MakeSchedule) -> None:
    now = timezone.now()
    three_hours_ago = now - timedelta(hours=3)
    schedule = make_schedule(time=f"{three_hours_ago:%H:%M}")
    # Made days ago; beat was down since: its catch-up message comes now.
    Schedule.objects.filter(pk=schedule.pk).update(updated_at=now - timedelta(days=4))
    firing = runner.fire(schedule.pk)
    assert firing is not None
    assert firing.scheduled_for == three_hours_ago.replace(second=0, microsecond=0)
    assert runner.fire(schedule.pk) is None  # a second catch-up message: dropped
    assert ScheduleFiring.objects.filter(schedule=schedule).count() == 1


def test_a_time_before_the_schedule_was_saved_is_not_owed(make_schedule: MakeSchedule) -> None:
    schedule = make_schedule(time=f"{timezone.now() - timedelta(hours=1):%H:%M}")
    assert runner.fire(schedule.pk) is None
    assert not ScheduleFiring.objects.exists()


def test_disabled_or_deleted_schedule_does_not_fire(make_schedule: MakeSchedule) -> None:
    schedule = every_minute(make_schedule, enabled=False)
    assert runner.fire(schedule.pk) is None
    assert runner.fire(987654) is None
    assert not Run.objects.exists()


def test_busy_app_is_skipped_after_the_wait_and_told(
    make_schedule: MakeSchedule, settings: Any
) -> None:
    settings.BACKUP_SCHEDULE_BUSY_WAIT_SECONDS = 0  # waited out at once
    schedule = every_minute(make_schedule)
    other = request_backup(schedule.app_id)  # a manual backup still pending: busy
    firing = runner.fire(schedule.pk)
    assert firing is not None
    firing.refresh_from_db()
    assert firing.state == ScheduleFiring.State.SKIPPED
    assert "busy" in firing.error and firing.run_id is None
    assert Run.objects.filter(app_id=schedule.app_id).get() == other
    told = Notification.objects.get(schedule=schedule)
    assert told.event == Notification.Event.BACKUP_SKIPPED
    assert schedule_state(schedule).last_result == "skipped"


def test_a_verify_or_upload_in_progress_does_not_make_the_app_busy(
    make_schedule: MakeSchedule, settings: Any
) -> None:
    settings.BACKUP_SCHEDULE_BUSY_WAIT_SECONDS = 0  # busy would mean skipped at once
    schedule = every_minute(make_schedule)
    for operation in (Run.Operation.VERIFY, Run.Operation.UPLOAD):
        Run.objects.create(operation=operation, app_id=schedule.app_id, state=Run.State.RUNNING)
    firing = runner.fire(schedule.pk)
    assert firing is not None
    firing.refresh_from_db()
    assert firing.state == ScheduleFiring.State.RUNNING, firing.error
    assert firing.run_id is not None


def test_firing_follows_its_real_backup_to_completed(
    make_schedule: MakeSchedule, settings: Any, tmp_path: Any, celery_queue: str
) -> None:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    settings.BACKUP_TASK_QUEUE = celery_queue  # retention's message: this session's queue
    schedule = every_minute(make_schedule, notify_on_success=True)
    firing = runner.fire(schedule.pk)
    assert firing is not None
    # Before the backup ends the firing is running; so is what the API shows.
    assert schedule_state(schedule).last_result == "running"
    snapshot = run_backup(str(firing.run_id))  # the worker's job, done here
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    # Before the settle comes, the API already shows the snapshot's end.
    assert schedule_state(schedule).last_result == "completed"
    assert runner.settle(firing.pk) == ScheduleFiring.State.COMPLETED
    assert runner.settle(firing.pk) is None  # the sweep finds it settled
    firing.refresh_from_db()
    assert firing.state == ScheduleFiring.State.COMPLETED and firing.finished_at
    state = schedule_state(schedule)
    assert state.last_backup_id == snapshot.backup_id
    assert Notification.objects.get(schedule=schedule).event == "backup_succeeded"


def test_firing_of_a_failed_backup_is_failed_and_told(
    make_schedule: MakeSchedule, settings: Any, tmp_path: Any
) -> None:
    settings.BACKUP_ROOT = tmp_path / "backups"
    schedule = every_minute(make_schedule)
    firing = runner.fire(schedule.pk)
    assert firing is not None
    Snapshot.objects.filter(pk=firing.snapshot_id).update(
        status=Snapshot.Status.FAILED, error="disk full (as the worker wrote it)"
    )
    assert runner.settle_open_firings() == 1
    firing.refresh_from_db()
    assert firing.state == ScheduleFiring.State.FAILED and "disk full" in firing.error
    told = Notification.objects.get(schedule=schedule)
    assert told.event == "backup_failed" and "disk full" in told.body
