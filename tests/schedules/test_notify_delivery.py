"""Delivery through Apprise to real local servers: SMTP (aiosmtpd, with a
checked password), an HTTP receiver for json://, a server that never
answers and a closed port. Secrets never reach logs, rows or errors."""

from __future__ import annotations

import logging
import time

import pytest

from schedules.models import AppNotificationTargets, Notification, Schedule
from schedules.notifications import attempt_delivery, notify, send_test
from schedules.notify import deliver
from schedules.secrets import encrypt_targets
from tests.schedules import notify_servers
from tests.schedules.notify_servers import (
    HTTP_TOKEN,
    SMTP_PASSWORD,
    HttpReceiver,
    SmtpServer,
    assert_no_secret,
    refused_url,
    silent_url,
)

pytestmark = pytest.mark.django_db

# The servers' fixtures (tests/schedules/conftest.py is not ours to own).
smtp_server = notify_servers.smtp_server
http_receiver = notify_servers.http_receiver
silent_port = notify_servers.silent_port
closed_port = notify_servers.closed_port


@pytest.fixture(autouse=True)
def _quick(settings) -> None:
    settings.BACKUP_NOTIFY_TIMEOUT_SECONDS = 2
    settings.BACKUP_NOTIFY_RETRY_SECONDS = 0


def _all_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every record of ours and Apprise's (not the test SMTP server's own
    "mail.log", which logs what the client sent it, password included)."""
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    return "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in ours)


def test_mail_and_json_arrive_and_the_password_was_used(
    smtp_server: SmtpServer, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = deliver(
        [smtp_server.url(), http_receiver.url()], "Backup failed: app1", "disk full", timeout=5
    )
    assert [o.status for o in outcomes] == ["sent", "sent"], outcomes
    message = smtp_server.wait_for(1)[0]
    assert message["Subject"] == "Backup failed: app1" and "ops@example.com" in message["To"]
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    assert "disk full" in text.get_payload(decode=True).decode()
    assert smtp_server.logins and all(ok for _, ok in smtp_server.logins)
    received = http_receiver.wait_for(1)[0]
    assert received["path"] == f"/notify/{HTTP_TOKEN}"
    assert received["body"]["title"] == "Backup failed: app1"
    assert received["body"]["message"] == "disk full"
    assert outcomes[0].target == f"mailto://…@127.0.0.1:{smtp_server.port}/…"
    assert_no_secret(_all_logs(caplog), "the logs")
    assert_no_secret(repr(outcomes), "the outcomes")


def test_wrong_smtp_password_fails_without_showing_it(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = smtp_server.url().replace(SMTP_PASSWORD, SMTP_PASSWORD + "-wrong")
    [outcome] = deliver([url], "t", "b", timeout=5)
    assert not outcome.ok and outcome.status == "failed"
    assert "535" in outcome.error or "uthentication" in outcome.error, outcome.error
    assert smtp_server.logins and not smtp_server.logins[-1][1]
    assert smtp_server.messages == []
    assert_no_secret(_all_logs(caplog) + repr(outcome), "the logs or the outcome")


def test_silent_and_refusing_targets_are_bounded_and_reported(
    silent_port: int, closed_port: int, http_receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    outcomes = deliver(
        [silent_url(silent_port), refused_url(closed_port), http_receiver.url()],
        "t", "b", timeout=2,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed  # one bounded wait, the targets in parallel
    silent, refused, ok = outcomes
    assert silent.status == "timeout" and not silent.ok, silent
    assert refused.status == "failed" and "refused" in refused.error.lower(), refused
    assert ok.ok  # the others still got it
    assert http_receiver.wait_for(1)
    assert_no_secret(_all_logs(caplog) + repr(outcomes), "the logs or the outcomes")


def test_an_http_error_status_is_a_failure(http_receiver: HttpReceiver) -> None:
    http_receiver.status = 500
    [outcome] = deliver([http_receiver.url()], "t", "b", timeout=2)
    assert not outcome.ok and "500" in outcome.error, outcome
    assert HTTP_TOKEN not in outcome.error


def test_notify_records_a_row_and_queues_after_commit(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    from schedules import notifications

    sent: list[tuple] = []
    monkeypatch.setattr(
        notifications.celery_app, "send_task", lambda name, **kw: sent.append((name, kw))
    )
    AppNotificationTargets.objects.create(
        app_id="app1", targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        row = notify("backup_failed", app_id="app1", title="Backup failed: app1", body="why")
        assert row is not None and sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sent == [
        ("schedules.send_notification", {"args": [row.pk], "kwargs": {}, "queue": "default"})
    ]
    assert row.state == "pending" and row.targets == [f"json://127.0.0.1:{http_receiver.port}/…"]
    attempt = attempt_delivery(row.pk)
    row.refresh_from_db()
    assert row.state == "sent" and row.attempts == 1 and row.sent_at is not None
    assert attempt.retry == [] and http_receiver.wait_for(1)[0]["body"]["message"] == "why"


def test_schedule_targets_win_and_success_needs_asking(
    http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> None:
    AppNotificationTargets.objects.create(
        app_id="app1", targets_encrypted=encrypt_targets([smtp_server.url()])
    )
    own = Schedule.objects.create(
        app_id="app1", notification_targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    bare = Schedule.objects.create(app_id="app1")
    a = notify("backup_failed", app_id="app1", title="t", body="b", schedule_id=own.pk)
    b = notify("backup_failed", app_id="app1", title="t", body="b", schedule_id=bare.pk)
    assert a.targets == [f"json://127.0.0.1:{http_receiver.port}/…"]
    assert b.targets == [f"mailto://…@127.0.0.1:{smtp_server.port}/…"]
    assert (
        notify("backup_succeeded", app_id="app1", title="ok", body="", schedule_id=own.pk) is None
    )
    Schedule.objects.filter(pk=own.pk).update(notify_on_success=True)
    assert notify("backup_succeeded", app_id="app1", title="ok", body="", schedule_id=own.pk)
    assert notify("backup_failed", app_id="nobody", title="t", body="b") is None


def test_notify_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from schedules import notifications

    def broken(*args, **kwargs):
        raise RuntimeError("database is gone")

    monkeypatch.setattr(notifications, "resolve_targets", broken)  # a fault, injected
    assert notify("backup_failed", app_id="app1", title="t", body="b") is None
    assert notify("no_such_event", app_id="app1", title="t", body="b") is None
    assert not Notification.objects.exists()


def test_failed_targets_are_retried_then_the_row_fails(
    http_receiver: HttpReceiver, closed_port: int, settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.BACKUP_NOTIFY_ATTEMPTS = 3
    caplog.set_level(logging.DEBUG)
    AppNotificationTargets.objects.create(
        app_id="app1",
        targets_encrypted=encrypt_targets([http_receiver.url(), refused_url(closed_port)]),
    )
    row = notify("verify_failed", app_id="app1", title="t", body="b")
    first = attempt_delivery(row.pk)
    assert first.retry == [1]  # only the one that failed
    second = attempt_delivery(row.pk, only=first.retry)
    third = attempt_delivery(row.pk, only=second.retry)
    row.refresh_from_db()
    assert row.state == "failed" and row.attempts == 3 and third.retry == []
    assert len(http_receiver.received) == 1  # the one that answered was told once
    assert "refused" in row.error.lower() and row.error.startswith("mailto://…@127.0.0.1")
    assert_no_secret(row.error + row.title + row.body + repr(row.targets), "the row")
    assert_no_secret(_all_logs(caplog), "the logs")


def test_send_test_answers_per_target(http_receiver: HttpReceiver, closed_port: int) -> None:
    schedule = Schedule.objects.create(
        app_id="app1",
        notification_targets_encrypted=encrypt_targets(
            [http_receiver.url(), refused_url(closed_port)]
        ),
    )
    attempt = send_test(schedule_id=schedule.pk)
    assert [o.ok for o in attempt.outcomes] == [True, False]
    assert attempt.notification.event == "test" and attempt.notification.state == "failed"
    assert "Test notification" in http_receiver.wait_for(1)[0]["body"]["title"]
