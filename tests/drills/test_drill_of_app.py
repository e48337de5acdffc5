"""A drill "of an app's latest snapshot": POST apps/<app_id>/drill and
`backup drill --app`. The snapshot rows are real rows; the queued task goes
to a queue no worker reads (the drill itself is tested in test_drill_stacks)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from drills.models import Drill
from drills.selectors import latest_snapshot
from snapshots.models import Run, Snapshot
from snapshots.services.api_keys import create_api_key

API = "/api/v1/backup"
pytestmark = pytest.mark.django_db


def _snapshot(app_id: str, suffix: str, minutes_ago: int, **fields: Any) -> Snapshot:
    row = Snapshot.objects.create(
        backup_id=f"backup_20260105_1030{minutes_ago:02d}_{suffix}", app_id=app_id, host_id="h",
        status=fields.pop("status", Snapshot.Status.COMPLETED), **fields,
    )  # fmt: skip
    Snapshot.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return row


@pytest.fixture
def snapshots() -> dict[str, Snapshot]:
    """Of app shop_1, newest first: a running one, a pre-restore safety
    backup, a failed one, then the one to drill, then an older completed one."""
    return {
        "running": _snapshot("shop_1", "aaaaaa", 1, status=Snapshot.Status.RUNNING),
        "safety": _snapshot("shop_1", "bbbbbb", 2, purpose=Snapshot.Purpose.PRE_RESTORE),
        "failed": _snapshot("shop_1", "cccccc", 3, status=Snapshot.Status.FAILED),
        "latest": _snapshot("shop_1", "dddddd", 4, purpose=Snapshot.Purpose.SCHEDULED),
        "older": _snapshot("shop_1", "eeeeee", 5),
        "other_app": _snapshot("shop_2", "ffffff", 0),
    }


def _api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("drill-of-app", scope="operate")[1])
    return client


def test_the_latest_snapshot_is_the_newest_completed_one_not_a_safety_backup(
    snapshots: dict[str, Snapshot],
) -> None:
    assert latest_snapshot("shop_1") == snapshots["latest"]
    assert latest_snapshot("shop_3") is None


def test_the_api_drills_the_apps_latest_snapshot(
    snapshots: dict[str, Snapshot], settings: Any
) -> None:
    settings.BACKUP_TASK_QUEUE = f"drill-test-unconsumed-{os.getpid()}"
    response = _api().post(f"{API}/apps/shop_1/drill")
    body = response.json()
    assert response.status_code == 202, body
    assert body["message"] == f"restore drill of {snapshots['latest'].backup_id} queued"
    data = body["data"]
    assert data["operation"] == "drill" and data["backup_id"] == snapshots["latest"].backup_id
    drill = Drill.objects.get(pk=data["task_id"])
    assert drill.snapshot == snapshots["latest"] and drill.app_id == "shop_1"
    assert Run.objects.get(pk=drill.pk).snapshot == snapshots["latest"]


def test_an_app_without_a_completed_snapshot_gets_a_404_and_nothing_is_created() -> None:
    _snapshot("shop_9", "aaaaaa", 1, status=Snapshot.Status.FAILED)
    response = _api().post(f"{API}/apps/shop_9/drill")
    assert response.status_code == 404
    assert response.json()["message"] == "app shop_9 has no completed snapshot to drill"
    response = _api().post(f"{API}/apps/Not..An..App/drill")
    assert response.status_code == 404 and "is not a valid app id" in response.json()["message"]
    assert not Drill.objects.exists() and not Run.objects.exists()


def test_the_command_refuses_an_app_without_a_snapshot_and_two_targets() -> None:
    with pytest.raises(CommandError, match="app shop_9 has no completed snapshot to drill"):
        call_command("backup", "drill", "--app", "shop_9")
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("backup", "drill", "backup_20260105_103000_aaaaaa", "--app", "shop_9")
    assert not Drill.objects.exists()
