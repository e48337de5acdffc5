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
from pathlib import Path

import pytest
import redis

from schedules import services
from schedules.models import Notification, ScheduleFiring
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
    assert firings.exists() and all(f.state == "running" for f in firings)
    assert not Snapshot.objects.filter(status="completed").exists()
    assert "Traceback" not in read_log(beat_and_shared_worker[0])
