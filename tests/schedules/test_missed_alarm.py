"""The missed-backup alarm with the host's worker stopped: a real beat
(DatabaseScheduler) and a real worker that serves only the shared queue
"default" (no worker serves the app's host queue, as when that host is
down). A schedule due every minute fires, its backup is never picked up,
and beat's check tells a real HTTP receiver "no backup", once per missed
due time, not every check.

Decided: real processes and the real clock, nothing mocked; beat checks
every 5 s with a 5 s grace (BACKUP_MISSED_CHECK_SECONDS/GRACE_SECONDS)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.utils import timezone

from schedules import services
from schedules.missed import check_missed_backups, missed_due
from schedules.models import Notification, Schedule, ScheduleFiring
from snapshots.models import Snapshot
from tests.conftest import REPO_ROOT, subprocess_env
from tests.schedules import notify_servers
from tests.schedules.conftest import read_log
from tests.schedules.notify_servers import HttpReceiver
from tests.stacks import ComposeStack

pytestmark = [
    pytest.mark.docker, pytest.mark.celery, pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]  # fmt: skip
http_receiver = notify_servers.http_receiver
# A Redis database of this test only: its worker takes "default".
BROKER = "redis://127.0.0.1:6379/13"


@pytest.fixture
def beat_and_shared_worker(transactional_db: None, tmp_path: Path) -> Iterator[list[Path]]:
    redis.Redis.from_url(BROKER).flushdb()  # no message of an earlier run
    env = subprocess_env() | {
        "CELERY_BROKER_URL": BROKER, "BACKUP_MISSED_CHECK_SECONDS": "5",
        "BACKUP_MISSED_GRACE_SECONDS": "5", "BACKUP_NOTIFY_QUEUE": "default",
        # The app's host queue: nobody serves it (its worker is "stopped").
        "BACKUP_TASK_QUEUE": f"host.stopped-{secrets.token_hex(3)}",
    }  # fmt: skip
    logs = [tmp_path / "worker.log", tmp_path / "beat.log"]
    commands = [
        ["worker", "-Q", "default", "--pool", "solo", "--loglevel", "INFO",
         "--hostname", f"shared-{secrets.token_hex(3)}@%h"],
        ["beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")],
    ]  # fmt: skip
    procs = []
    for command, log in zip(commands, logs, strict=True):
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "backup_project", *command],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    try:
        yield logs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_missed_backup_is_told_once_per_due_time_with_the_host_worker_stopped(
    host_app: ComposeStack, http_receiver: HttpReceiver, beat_and_shared_worker: list[Path]
) -> None:
    schedule = services.create_schedule({
        "app_id": host_app.project, "frequency": "cron", "cron_expression": "* * * * *",
        "notification_targets": [http_receiver.url()],
    })  # fmt: skip
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not http_receiver.received:
        time.sleep(1)
    worker_log, beat_log = (read_log(p)[-3000:] for p in beat_and_shared_worker)
    assert http_receiver.received, f"nothing told\nworker:\n{worker_log}\nbeat:\n{beat_log}"
    told = http_receiver.received[0]["body"]
    assert f"No backup of {host_app.project}" in told["title"], told
    assert "Is the worker of its host running?" in told["message"]

    time.sleep(20)  # four more checks of beat within and after the same period
    rows = Notification.objects.filter(schedule=schedule, event="backup_missed")
    due_times = [re.search(r"due (\S+ \S+) UTC", row.body).group(1) for row in rows]
    assert due_times and max(Counter(due_times).values()) == 1, due_times
    # The firings happened (on "default") but their backups never started.
    firings = ScheduleFiring.objects.filter(schedule=schedule)
    # Beat first fires a new schedule at the first due time after it has
    # noticed it (up to its 5 s loop later), which can be the next minute:
    # the alarm for the due time it missed may come before any firing.
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline and not firings.exists():
        time.sleep(1)
    worker_log, beat_log = (read_log(p)[-4000:] for p in beat_and_shared_worker)
    assert firings.exists(), f"no firing\nworker:\n{worker_log}\nbeat:\n{beat_log}"
    assert all(f.state == "running" for f in firings)
    assert not Snapshot.objects.filter(status="completed").exists()
    assert "Traceback" not in read_log(beat_and_shared_worker[0])


# -- the rule, with explicit instants (in this process, the real database) -------


def _daily_since(host_app: ComposeStack, days: int, **values: object) -> Schedule:
    schedule = services.create_schedule({"app_id": host_app.project, "time": "02:00"} | values)
    Schedule.objects.filter(pk=schedule.pk).update(updated_at=timezone.now() - timedelta(days=days))
    schedule.refresh_from_db()
    return schedule


def _completed(app_id: str, at: datetime, location: str = "local") -> None:
    snapshot = Snapshot.objects.create(
        backup_id=f"backup_20260101_000000_{secrets.token_hex(3)}", app_id=app_id, host_id="t",
        status="completed", storage_location=location,
    )  # fmt: skip
    Snapshot.objects.filter(pk=snapshot.pk).update(created_at=at)


@pytest.mark.django_db
def test_missed_rule_grace_and_the_schedule_location(host_app: ComposeStack, settings: Any) -> None:
    settings.BACKUP_MISSED_GRACE_SECONDS = 3600
    schedule = _daily_since(host_app, 10, notification_targets=["json://127.0.0.1:9/x"])
    now = datetime.now(UTC)
    due = now.replace(hour=2, minute=0, second=0, microsecond=0)
    due = due if due <= now else due - timedelta(days=1)
    # Within the grace after the due time: not yet missed, whatever exists.
    assert missed_due(schedule, due + timedelta(minutes=59)) is None
    # After it, with no snapshot at all: missed.
    found = missed_due(schedule, due + timedelta(minutes=61))
    assert found is not None and found.due == due and found.last_success is None
    # The day before's backup does not keep today's due time.
    _completed(host_app.project, due - timedelta(days=1) + timedelta(seconds=5))
    assert missed_due(schedule, due + timedelta(minutes=61)) is not None
    # A backup to another location does not either; one to its own does.
    _completed(host_app.project, due + timedelta(seconds=5), location="elsewhere")
    assert missed_due(schedule, due + timedelta(minutes=61)) is not None
    _completed(host_app.project, due + timedelta(seconds=5))
    assert missed_due(schedule, due + timedelta(minutes=61)) is None


@pytest.mark.django_db
def test_missed_is_told_once_per_due_time(host_app: ComposeStack, settings: Any) -> None:
    settings.BACKUP_MISSED_GRACE_SECONDS = 0
    schedule = _daily_since(host_app, 3, notification_targets=["json://127.0.0.1:9/x"])
    first = check_missed_backups()
    assert [m.schedule_id for m in first] == [schedule.pk]
    assert check_missed_backups() == [] and check_missed_backups() == []
    assert Notification.objects.filter(event="backup_missed").count() == 1
    services.set_enabled(schedule, False)
    Notification.objects.all().delete()
    assert check_missed_backups() == []  # a disabled schedule promises nothing
