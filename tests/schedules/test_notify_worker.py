"""Delivery through a real Celery worker process: a notification reaches
the HTTP receiver; a refusing target is retried by the worker and the row
ends failed; a verify of a corrupted archive (deep, run by the worker)
produces a verify_failed notification that arrives. The worker's log holds
no secret."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from schedules.models import AppNotificationTargets, Notification
from schedules.notifications import notify
from schedules.secrets import encrypt_targets
from snapshots.models import Run, Snapshot
from snapshots.services.snapshots import start_deep_verify
from storage.local import LocalStorage
from tests.schedules import notify_servers
from tests.schedules.notify_servers import HttpReceiver, assert_no_secret, refused_url

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

http_receiver = notify_servers.http_receiver
closed_port = notify_servers.closed_port


@pytest.fixture
def notify_worker(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, settings, celery_queue: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker on this session's queue, delivering with short waits."""
    for name, value in {
        "BACKUP_NOTIFY_QUEUE": celery_queue, "BACKUP_NOTIFY_TIMEOUT_SECONDS": "2",
        "BACKUP_NOTIFY_RETRY_SECONDS": "1", "BACKUP_NOTIFY_ATTEMPTS": "3",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)  # read by the worker's settings
    settings.BACKUP_NOTIFY_QUEUE = celery_queue  # where this process sends
    settings.BACKUP_TASK_QUEUE = celery_queue
    yield request.getfixturevalue("celery_worker")


def _wait_for_state(pk: int, states: set[str], timeout: float = 60) -> Notification:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Notification.objects.get(pk=pk)
        if row.state in states:
            return row
        time.sleep(0.2)
    pytest.fail(f"notification {pk} stayed {row.state}: {row.error}")


def _wait_for_log(path: Path, text: str, timeout: float = 20) -> str:
    """The worker's log once it holds TEXT (its line is written just after
    the row is updated)."""
    deadline = time.monotonic() + timeout
    while text not in (log := path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert text in log, log[-3000:]
    return log


def test_the_worker_delivers_and_retries_a_refusing_target(
    notify_worker: subprocess.Popen[bytes], http_receiver: HttpReceiver, closed_port: int,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    AppNotificationTargets.objects.create(
        app_id="app1",
        targets_encrypted=encrypt_targets([http_receiver.url(), refused_url(closed_port)]),
    )
    row = notify("backup_failed", app_id="app1", title="Backup failed: app1", body="disk full")
    assert row is not None  # autocommit: queued at once
    done = _wait_for_state(row.pk, {"failed", "sent"})
    assert done.state == "failed" and done.attempts == 3, (done.state, done.attempts, done.error)
    assert "refused" in done.error.lower()
    # The answering target was told once, not once per retry.
    assert [r["body"]["title"] for r in http_receiver.received] == ["Backup failed: app1"]
    log = _wait_for_log(tmp_path / "worker.log", "failed, giving up")
    assert "schedules.send_notification" in log
    assert_no_secret(log, "the worker's log")
    assert_no_secret(done.error + repr(done.targets), "the row")


def test_a_corrupted_archive_tells_of_a_failed_verify(
    notify_worker: subprocess.Popen[bytes], http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    AppNotificationTargets.objects.create(
        app_id="app1", targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    data = b"not really an archive, but its checksum is recorded"
    backup_id = "backup_20260105_103000_abcdef"
    snapshot = Snapshot.objects.create(
        # Made on the worker's host: a deep verify goes to that host's worker (fleet).
        backup_id=backup_id, app_id="app1", host_id=django_settings.BACKUP_HOST_ID,
        status=Snapshot.Status.COMPLETED,
        size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        storage_key=f"app1/{backup_id}.tar.zst",
    )  # fmt: skip
    storage = LocalStorage(Path(django_settings.BACKUP_ROOT))
    with storage.open_writer(snapshot.storage_key) as writer:
        writer.write(data[:-1] + b"X")  # one byte changed after the backup
    with storage.open_writer(f"{snapshot.storage_key}.sha256") as writer:
        writer.write(f"{snapshot.sha256}  {backup_id}.tar.zst\n".encode())
    run = start_deep_verify(snapshot)
    received = http_receiver.wait_for(1, timeout=60)[0]
    assert Run.objects.get(pk=run.pk).state == "failed"
    assert received["body"]["title"] == f"Verify failed: app1 {backup_id}"
    assert "does not match" in received["body"]["message"]
    row = Notification.objects.get(event="verify_failed")
    assert _wait_for_state(row.pk, {"sent", "failed"}).state == "sent"
    time.sleep(1)
    assert len(http_receiver.received) == 1, http_receiver.received
