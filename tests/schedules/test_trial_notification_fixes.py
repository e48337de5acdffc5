"""Fixes found using the product as a new user (the trial of make run):
a failure reaches the receiver typed as a failure, the admin's test action
names the app as it is spelled, and a test for an app without targets says
so without talking of "its app". Real json:// receivers (a local HTTP
server), the real admin through Django's client."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from schedules.models import AppNotificationTargets
from schedules.notifications import NoTargets, attempt_delivery, notify, send_test
from schedules.secrets import encrypt_targets
from tests.schedules import notify_servers
from tests.schedules.notify_servers import HttpReceiver

pytestmark = pytest.mark.django_db

http_receiver = notify_servers.http_receiver


@pytest.fixture(autouse=True)
def _quick(settings) -> None:
    settings.BACKUP_NOTIFY_TIMEOUT_SECONDS = 2
    settings.BACKUP_NOTIFY_RETRY_SECONDS = 0


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("backup_failed", "failure"),
        ("retention_failed", "failure"),
        ("verify_failed", "failure"),
        ("drill_failed", "failure"),
        ("backup_missed", "warning"),
    ],
)
def test_an_event_arrives_with_its_notify_type(
    http_receiver: HttpReceiver, event: str, kind: str
) -> None:
    # It used to arrive as "info": Slack/Discord/ntfy showed a failed
    # backup like a piece of news.
    AppNotificationTargets.objects.create(
        app_id="app1", targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    row = notify(event, app_id="app1", title="Backup of app1 failed", body="disk full")
    assert row is not None
    attempt_delivery(row.pk)
    [received] = http_receiver.wait_for(1)
    assert received["body"]["type"] == kind, received
    assert received["body"]["message"] == "disk full"


def test_a_test_notification_is_info(http_receiver: HttpReceiver) -> None:
    AppNotificationTargets.objects.create(
        app_id="app1", targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    send_test(app_id="app1")
    assert http_receiver.wait_for(1)[0]["body"]["type"] == "info"


def test_an_app_without_targets_is_told_plainly() -> None:
    with pytest.raises(NoTargets) as caught:
        send_test(app_id="lonely")
    assert str(caught.value) == "app lonely has no notification targets"


def test_admin_test_action_spells_the_app_id_as_it_is(
    admin_client: Client, http_receiver: HttpReceiver
) -> None:
    # Django's admin capitalises the first letter of every message: one
    # that began with the app id showed "Wptrial", an app that does not exist.
    AppNotificationTargets.objects.create(
        app_id="wptrial", targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    url = "/admin/schedules/appnotificationtargets/"
    response = admin_client.post(
        url, {"action": "send_test_notification", "_selected_action": ["wptrial"]}, follow=True
    )
    page = response.content.decode()
    shown = re.findall(r'<li class="(?:info|success|warning|error)">(.*?)</li>', page, re.S)
    assert shown, page[-3000:]
    assert all("wptrial" in text and "Wptrial" not in text for text in shown), shown
    assert http_receiver.wait_for(1)


def test_admin_form_with_an_error_does_not_echo_the_urls_typed(admin_client: Client) -> None:
    # The targets textarea was rendered again with what was posted: a
    # password typed in a URL came back in clear in the error page.
    secret = "Pw-N0t-Sh0wn-9x"
    response = admin_client.post(
        "/admin/schedules/appnotificationtargets/add/",
        {"app_id": "wptrial", "new_targets": f"json://ops:{secret}@127.0.0.1:9/hook\nnot a url"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "errorlist" in page  # shown again, with the error
    assert "not a URL" in page
    assert secret not in page
    assert not AppNotificationTargets.objects.exists()
