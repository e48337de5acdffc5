"""Notifications API: an app's targets (write-only, read back masked),
a test send answered now with what each target said, the list of rows.
Real HTTP receiver and a closed port; no secret in any response."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from schedules.models import AppNotificationTargets, Notification, Schedule
from schedules.secrets import decrypt_targets, encrypt_targets
from snapshots.services.api_keys import create_api_key
from tests.schedules import notify_servers
from tests.schedules.notify_servers import HttpReceiver, assert_no_secret, refused_url

pytestmark = pytest.mark.django_db
API = "/api/v1/backup"

http_receiver = notify_servers.http_receiver
closed_port = notify_servers.closed_port


@pytest.fixture(autouse=True)
def _quick(settings) -> None:
    settings.BACKUP_NOTIFY_TIMEOUT_SECONDS = 2


@pytest.fixture
def client() -> APIClient:
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=create_api_key("notify-tests")[1])
    return api


def _body(response, status: int) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"code", "message", "data"}
    assert_no_secret(json.dumps(body), "the API's answer")
    return body


def test_targets_are_write_only_and_read_back_masked(
    client: APIClient, http_receiver: HttpReceiver, closed_port: int
) -> None:
    urls = [http_receiver.url(), refused_url(closed_port)]
    body = _body(
        client.put(f"{API}/apps/app1/notifications", {"targets": urls}, format="json"), 200
    )
    masked = [f"json://127.0.0.1:{http_receiver.port}/…", f"mailto://…@127.0.0.1:{closed_port}/…"]
    assert body["data"] == {"app_id": "app1", "targets": masked, "notify_on_success": False}
    stored = AppNotificationTargets.objects.get(app_id="app1")
    assert_no_secret(stored.targets_encrypted, "the stored row")  # encrypted at rest
    assert decrypt_targets(stored.targets_encrypted) == urls
    again = _body(client.get(f"{API}/apps/app1/notifications"), 200)
    assert again["data"]["targets"] == masked
    cleared = _body(client.put(f"{API}/apps/app1/notifications", {"targets": []}, "json"), 200)
    assert cleared["data"]["targets"] == []


@pytest.mark.parametrize(
    "url, says",
    [
        ("nosuch://user:hook-Tok3n-R8mW2sXy4@example.com", "unknown notification scheme"),
        ("just some words hook-Tok3n-R8mW2sXy4", "is not a URL"),
        ("mailto://user:smtp-Pa55-q7Zx9vLk@", "Apprise cannot use"),
    ],
)
def test_a_bad_target_is_a_400_that_keeps_the_old_list(
    client: APIClient, http_receiver: HttpReceiver, url: str, says: str
) -> None:
    client.put(f"{API}/apps/app1/notifications", {"targets": [http_receiver.url()]}, "json")
    body = _body(
        client.put(
            f"{API}/apps/app1/notifications", {"targets": [http_receiver.url(), url]}, "json"
        ),
        400,
    )
    assert "target 2" in body["message"] and says in body["message"], body["message"]
    stored = AppNotificationTargets.objects.get(app_id="app1")
    assert decrypt_targets(stored.targets_encrypted) == [http_receiver.url()]


def test_send_test_answers_what_each_target_said(
    client: APIClient, http_receiver: HttpReceiver, closed_port: int
) -> None:
    schedule = Schedule.objects.create(
        app_id="app1",
        notification_targets_encrypted=encrypt_targets(
            [http_receiver.url(), refused_url(closed_port)]
        ),
    )
    body = _body(
        client.post(f"{API}/notifications/test", {"schedule_id": schedule.pk}, "json"), 200
    )
    assert body["message"] == "test notification failed for 1 of 2 target(s)"
    sent, refused = body["data"]["targets"]
    assert sent["ok"] and sent["status"] == "sent"
    assert not refused["ok"] and "refused" in refused["error"].lower()
    assert body["data"]["notification"]["event"] == "test"
    assert (
        http_receiver.received and "Test notification" in http_receiver.received[0]["body"]["title"]
    )
    listed = _body(client.get(f"{API}/notifications", {"app_id": "app1"}), 200)
    assert [row["id"] for row in listed["data"]] == [body["data"]["notification"]["id"]]
    assert (
        listed["data"][0]["state"] == "failed" and "refused" in listed["data"][0]["error"].lower()
    )


def test_send_test_errors(client: APIClient) -> None:
    assert (
        "exactly one" in _body(client.post(f"{API}/notifications/test", {}, "json"), 400)["message"]
    )
    _body(client.post(f"{API}/notifications/test", {"schedule_id": 999999}, "json"), 404)
    nobody = _body(client.post(f"{API}/notifications/test", {"app_id": "nobody"}, "json"), 409)
    assert "no notification targets" in nobody["message"]
    assert not Notification.objects.exists()


def test_list_filters_and_refuses_unknown_parameters(client: APIClient) -> None:
    Notification.objects.create(event="backup_failed", app_id="app1", title="a", state="sent")
    Notification.objects.create(event="verify_failed", app_id="app2", title="b", state="failed")
    rows = _body(client.get(f"{API}/notifications", {"state": "failed"}), 200)["data"]
    assert [row["app_id"] for row in rows] == ["app2"]
    _body(client.get(f"{API}/notifications", {"app": "app1"}), 400)
    _body(client.get(f"{API}/notifications", {"event": "nope"}), 400)


def test_needs_an_api_key(http_receiver: HttpReceiver) -> None:
    anonymous = APIClient()
    assert anonymous.get(f"{API}/apps/app1/notifications").status_code == 401
    response = anonymous.put(
        f"{API}/apps/app1/notifications", {"targets": [http_receiver.url()]}, format="json"
    )
    assert response.status_code == 401 and not AppNotificationTargets.objects.exists()
