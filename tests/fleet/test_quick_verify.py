"""A quick verify needs no engine, only the archive's bytes: it is answered
in the web process where they can be read, and a local archive kept only
on another host's disk goes to that host's queue (it was reported
"missing" before). The message is read back from the real Redis broker;
the other host's worker is this test process reading that host's disk
(BACKUP_ROOT switched), the same run_verify a worker runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from snapshots.models import Run, Snapshot
from snapshots.services.verify import run_verify
from storage.local import LocalStorage
from tests.api.conftest import API, MakeSnapshot, envelope
from tests.fleet.helpers import age_host

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "fleet-disk-host"


def _queued(queue: str) -> list[str]:
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    return [json.loads(raw)["headers"]["id"] for raw in broker.lrange(queue, 0, -1)]


@pytest.fixture
def other_hosts_snapshot(
    make_snapshot: MakeSnapshot, settings, tmp_path: Path
) -> tuple[Snapshot, Path]:
    """A local snapshot of OTHER (online), its archive on OTHER's disk only."""
    settings.BACKUP_TASK_QUEUE = ""  # routed by host, as in production
    settings.BACKUP_API_WAIT_SECONDS = 1
    data = b"an archive on another host's disk"
    sha256 = hashlib.sha256(data).hexdigest()
    snapshot = make_snapshot(app_id="shop", host_id=OTHER, size_bytes=len(data), sha256=sha256)
    key = f"shop/{snapshot.backup_id}.tar.zst"
    other_disk = tmp_path / "other-disk"
    storage = LocalStorage(other_disk)
    with storage.open_writer(key) as writer:
        writer.write(data)
    with storage.open_writer(f"{key}.sha256") as writer:
        writer.write(f"{sha256}  {snapshot.backup_id}.tar.zst\n".encode())
    Snapshot.objects.filter(pk=snapshot.pk).update(storage_key=key)
    snapshot.refresh_from_db()
    settings.BACKUP_ROOT = tmp_path / "web-disk"  # the web's own disk: not there
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete(f"host.{OTHER}")
    return snapshot, other_disk


def test_another_hosts_local_snapshot_is_verified_by_that_host(
    api: APIClient, other_hosts_snapshot: tuple, settings
) -> None:
    snapshot, other_disk = other_hosts_snapshot
    url = f"{API}/snapshots/{snapshot.backup_id}/verify"
    response = api.post(url, {"deep": False}, format="json")
    data = envelope(response, 202)  # no worker of OTHER here within the wait
    assert f"running on host {OTHER}" in response.json()["message"]
    assert _queued(f"host.{OTHER}") == [data["task_id"]]
    run = Run.objects.get(pk=data["task_id"])
    assert run.host_id == OTHER and run.options == {"deep": False}

    settings.BACKUP_ROOT = other_disk  # OTHER's worker, reading its own disk
    run = run_verify(str(run.pk))
    assert run.state == "completed" and run.result["valid"] is True, run.result

    age_host(OTHER, heartbeat_seconds=django_settings.BACKUP_HOST_OFFLINE_SECONDS + 5)
    settings.BACKUP_ROOT = other_disk.parent / "web-disk"
    response = api.post(url, {"deep": False}, format="json")
    envelope(response, 503)
    assert f"host {OTHER} is offline" in response.json()["message"]


def test_a_snapshot_readable_here_is_answered_here(
    api: APIClient, other_hosts_snapshot: tuple, settings
) -> None:
    snapshot, other_disk = other_hosts_snapshot
    settings.BACKUP_ROOT = other_disk  # that host's disk is mounted here too
    url = f"{API}/snapshots/{snapshot.backup_id}/verify"
    data = envelope(api.post(url, {"deep": False}, format="json"), 200)
    assert data["valid"] is True and _queued(f"host.{OTHER}") == []
