"""The retention tasks through a real Celery worker on Redis and the test
database: schedules.apply_retention [app_id] and schedules.apply_retention_all
(which fans out one apply_retention per app to the host queue)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from backup_project.celery import app as celery_app
from schedules.models import Schedule
from snapshots.models import Snapshot
from tests.schedules.retention_helpers import files_of, make_stored

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(
    settings: Any,
    tmp_path: Path,
    celery_queue: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Any:
    """A real worker on this session's queue, which is also the host queue
    (in this process and in the worker, so the fan-out reaches it)."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_TASK_QUEUE = celery_queue
    monkeypatch.setenv("BACKUP_TASK_QUEUE", celery_queue)
    return request.getfixturevalue("celery_worker")


def _wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not do it in time")


def test_apply_retention_task_removes_what_retention_removes(
    worker: Any, celery_queue: str
) -> None:
    Schedule.objects.create(app_id="task_app", keep_last=1)
    snaps = [make_stored("task_app", days) for days in (0.1, 1, 2)]
    result = celery_app.send_task(
        "schedules.apply_retention", args=["task_app"], queue=celery_queue
    ).get(timeout=60)
    assert sorted(result["removed"]) == sorted(s.backup_id for s in snaps[1:])
    assert result["freed_bytes"] > 0 and result["failed"] == [] and result["dry_run"] is False
    assert not any(p.exists() for s in snaps[1:] for p in files_of(s))
    assert list(Snapshot.objects.values_list("pk", flat=True)) == [snaps[0].pk]


def test_apply_retention_all_fans_out_to_every_app_with_a_rule(
    worker: Any, celery_queue: str
) -> None:
    Schedule.objects.create(app_id="fan_one", keep_last=1)
    Schedule.objects.create(app_id="fan_two", retention_days=5)
    Schedule.objects.create(app_id="fan_none")  # no rule: nothing removed
    one = [make_stored("fan_one", days) for days in (0.1, 1)]
    two = [make_stored("fan_two", days) for days in (0.1, 3, 10)]
    none = [make_stored("fan_none", days) for days in (0.1, 100)]

    result = celery_app.send_task("schedules.apply_retention_all", queue=celery_queue).get(
        timeout=60
    )
    assert result == {"queued": ["fan_one", "fan_two"]}
    gone = [one[1], two[2]]
    _wait_until(lambda: not Snapshot.objects.filter(pk__in=[s.pk for s in gone]).exists())
    assert not any(p.exists() for s in gone for p in files_of(s))
    kept = [one[0], *two[:2], *none]
    assert Snapshot.objects.filter(pk__in=[s.pk for s in kept]).count() == len(kept)
    assert all(p.exists() for s in kept for p in files_of(s))
