"""The schedules API over the real stack (API key, envelope, the Docker
engine for app discovery): the seed's POST body, list with ?app_id=, one
schedule read/changed/deleted, run now, and clear 400s."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from schedules.models import Schedule, ScheduleFiring
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.django_db, pytest.mark.docker]
API = "/api/v1/backup"


def call(api: APIClient, method: str, path: str, status: int, body: Any = None) -> Any:
    response = getattr(api, method)(f"{API}{path}", body, format="json")
    payload = response.json()
    assert response.status_code == status, payload
    assert set(payload) == {"code", "message", "data"} and payload["code"] == status
    return payload


def seed_body(app_id: str) -> dict[str, Any]:
    return {"app_id": app_id, "enabled": True, "frequency": "daily", "time": "02:00",
            "retention_days": 30, "backup_type": "full", "storage_location": "local"}  # fmt: skip


def test_seed_body_create_list_read_patch_delete(api: APIClient, host_app: ComposeStack) -> None:
    app_id = host_app.project
    created = call(api, "post", "/schedules", 201, seed_body(app_id))["data"]
    assert created["app_id"] == app_id and created["time"] == "02:00"
    assert created["timezone"] == "UTC" and created["retention_days"] == 30
    assert created["next_run_at"].endswith("02:00:00Z")
    assert created["last_run_at"] is None and created["last_result"] is None
    assert created["notification_targets_masked"] == []

    weekly = call(api, "post", "/schedules", 201, {
        "app_id": app_id, "frequency": "weekly", "weekday": 6, "time": "03:30",
        "timezone": "Europe/Berlin", "keep_weekly": 8,
        "notification_targets": ["json://user:s3cr3t-pass@127.0.0.1:9/hook"],
    })["data"]  # fmt: skip
    assert weekly["notification_targets_masked"] and "s3cr3t" not in str(weekly)
    assert "notification_targets" not in weekly

    listed = call(api, "get", f"/schedules?app_id={app_id}", 200)["data"]
    assert listed["total"] == 2
    assert [s["id"] for s in listed["schedules"]] == [created["id"], weekly["id"]]
    assert call(api, "get", "/schedules?app_id=nosuchapp", 200)["data"]["total"] == 0

    one = call(api, "get", f"/schedules/{weekly['id']}", 200)["data"]
    assert one["weekday"] == 6 and one["timezone"] == "Europe/Berlin"

    patched = call(api, "patch", f"/schedules/{created['id']}", 200,
                   {"enabled": False, "time": "04:15"})["data"]  # fmt: skip
    assert patched["enabled"] is False and patched["time"] == "04:15"
    assert patched["next_run_at"] is None

    deleted = call(api, "delete", f"/schedules/{created['id']}", 200)["data"]
    assert deleted == {"id": created["id"], "app_id": app_id, "deleted": True}
    call(api, "get", f"/schedules/{created['id']}", 404)
    assert "s3cr3t" not in str(call(api, "get", "/schedules", 200))


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"time": "25:00"}, "time", "HH:MM"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "unknown timezone"),
        ({"frequency": "fortnightly"}, "frequency", "hourly, daily, weekly, monthly, cron"),
        ({"frequency": "weekly", "weekday": 9}, "weekday", "0-6"),
        ({"frequency": "monthly", "day_of_month": 40}, "day_of_month", "1-31"),
        ({"frequency": "cron", "cron_expression": "* * * *"}, "cron_expression", "five fields"),
        ({"frequency": "cron", "cron_expression": "99 * * * *"}, "cron_expression", "99"),
        ({"app_id": "nosuchapp-zz"}, "app_id", "nosuchapp-zz"),
        ({"storage_location": "s3-offsite"}, "storage_location", "unknown storage location"),
        ({"backup_type": "differential"}, "backup_type", 'use "full" or "incremental"'),
        ({"notification_targets": ["nope"]}, "notification_targets", "target 1"),
        ({"colour": "blue"}, "colour", "unknown field"),
    ],
)
def test_bad_input_is_a_clear_400_and_saves_nothing(
    api: APIClient, host_app: ComposeStack, change: dict, field: str, fragment: str
) -> None:
    body = call(api, "post", "/schedules", 400, seed_body(host_app.project) | change)
    assert field in body["data"], body
    assert fragment in str(body["data"][field]), body
    assert not Schedule.objects.exists()


def test_encrypt_without_a_key_is_refused_when_saved_not_at_every_firing(
    api: APIClient, host_app: ComposeStack, settings: Any
) -> None:
    settings.BACKUP_AGE_RECIPIENTS = []
    settings.BACKUP_PASSPHRASE = ""
    body = call(api, "post", "/schedules", 400, seed_body(host_app.project) | {"encrypt": True})
    assert "neither BACKUP_AGE_RECIPIENTS nor BACKUP_PASSPHRASE" in str(body["data"]["encrypt"])
    assert not Schedule.objects.exists()
    created = call(api, "post", "/schedules", 201, seed_body(host_app.project))["data"]
    call(api, "patch", f"/schedules/{created['id']}", 400, {"encrypt": True})
    assert Schedule.objects.get().encrypt is None


def test_run_now_queues_one_firing_per_minute(
    api: APIClient, host_app: ComposeStack, django_capture_on_commit_callbacks: Any
) -> None:
    """The API's side: the firing row and its start queued after commit (not
    executed here: test_firing.py starts firings with real processes)."""
    schedule = call(api, "post", "/schedules", 201, seed_body(host_app.project))["data"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accepted = call(api, "post", f"/schedules/{schedule['id']}/run", 202)["data"]
    assert accepted["manual"] is True and accepted["state"] == "pending"
    assert len(callbacks) == 1
    firing = ScheduleFiring.objects.get()
    assert firing.pk == accepted["firing_id"] and firing.schedule_id == schedule["id"]
    conflict = call(api, "post", f"/schedules/{schedule['id']}/run", 409)
    assert "already has a run" in conflict["message"]
    assert ScheduleFiring.objects.count() == 1
    call(api, "post", "/schedules/999999/run", 404)
    call(api, "get", "/schedules/abc", 404)


def test_without_a_key_401(host_app: ComposeStack, db: None) -> None:
    response = APIClient().get(f"{API}/schedules")
    assert response.status_code == 401 and response.json()["code"] == 401
