"""Firings in a real worker (shared queue + the app's host queue, on a
Redis database of this test): a busy app is waited for (the start is
re-queued with a countdown) and then backed up once it is free; one that
stays busy past BACKUP_SCHEDULE_BUSY_WAIT_SECONDS is skipped; the firing
row itself (not only what the API derives) ends completed through the
settle task linked to the backup's task."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.utils import timezone

from schedules import services
from schedules.models import ScheduleFiring
from schedules.timing import minute_floor
from snapshots.models import Run, Snapshot
from snapshots.services.backup import request_backup
from tests.conftest import REPO_ROOT, subprocess_env
from tests.schedules.conftest import read_log
from tests.stacks import ComposeStack

pytestmark = [
    pytest.mark.docker, pytest.mark.celery, pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]  # fmt: skip
BROKER = "redis://127.0.0.1:6379/14"
BUSY_WAIT = 8


@pytest.fixture
def worker(transactional_db: None, tmp_path: Path) -> Iterator[Path]:
    redis.Redis.from_url(BROKER).flushdb()
    host_queue = f"host.firing-{secrets.token_hex(3)}"
    env = subprocess_env() | {
        "CELERY_BROKER_URL": BROKER, "BACKUP_TASK_QUEUE": host_queue,
        "BACKUP_SCHEDULE_BUSY_WAIT_SECONDS": str(BUSY_WAIT),
    }  # fmt: skip
    log = tmp_path / "worker.log"
    name = f"firing-{secrets.token_hex(3)}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backup_project", "worker", "-Q",
             f"default,{host_queue}", "--pool", "solo", "--loglevel", "INFO",
             "--hostname", f"{name}@%h"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "ready." not in read_log(log):
            assert time.monotonic() < deadline and proc.poll() is None, read_log(log)[-3000:]
            time.sleep(0.5)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_now(schedule: Any) -> ScheduleFiring:
    """What run_now does, its start sent on this test's broker (the app of
    this process is bound to the session's broker)."""
    firing = ScheduleFiring.objects.create(
        schedule=schedule, scheduled_for=minute_floor(timezone.now()), manual=True
    )
    # Sent by another process on this test's broker (this process's app is
    # bound to the session's broker at import).
    send = (
        "from backup_project.celery import app; "
        f"app.send_task('schedules.start_firing', args=[{firing.pk}], queue='default')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", send],
        cwd=REPO_ROOT, env=subprocess_env() | {"CELERY_BROKER_URL": BROKER}, check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
    return firing


def wait_state(firing: ScheduleFiring, states: set[str], log: Path, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        firing.refresh_from_db()
        if firing.state in states:
            return firing
        time.sleep(0.5)
    raise AssertionError(f"firing {firing.state}, not {states}:\n{read_log(log)[-6000:]}")


def test_busy_app_is_waited_for_then_backed_up_and_the_row_completes(
    host_app: ComposeStack, worker: Path
) -> None:
    schedule = services.create_schedule({"app_id": host_app.project})
    blocker = request_backup(host_app.project)  # pending: the app is busy
    firing = start_now(schedule)
    time.sleep(3)  # the worker finds it busy and re-queues the start
    firing.refresh_from_db()
    assert firing.state == ScheduleFiring.State.PENDING, read_log(worker)[-3000:]
    Run.objects.filter(pk=blocker.pk).update(state=Run.State.FAILED)  # free again
    firing = wait_state(firing, {"completed", "failed", "skipped"}, worker)
    assert firing.state == ScheduleFiring.State.COMPLETED, (firing.error, read_log(worker)[-3000:])
    snapshot = Snapshot.objects.get(pk=firing.snapshot_id)
    assert snapshot.status == "completed" and snapshot.purpose == "scheduled"
    assert "checking again" in read_log(worker)


def test_app_busy_past_the_wait_is_skipped(host_app: ComposeStack, worker: Path) -> None:
    schedule = services.create_schedule({"app_id": host_app.project})
    request_backup(host_app.project)  # stays pending: busy throughout
    started = time.monotonic()
    firing = start_now(schedule)
    firing = wait_state(firing, {"completed", "failed", "skipped"}, worker, timeout=60)
    assert firing.state == ScheduleFiring.State.SKIPPED and "busy" in firing.error
    assert time.monotonic() - started >= BUSY_WAIT - 1
    assert not Snapshot.objects.filter(purpose="scheduled").exists()
