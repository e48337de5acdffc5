"""Work for an app goes to the queue of the host its inventory is on, and a
host that stopped heartbeating gets none. The messages are read back from
the real Redis broker; the inventories come from the real engine (a second
host is the same engine reported under another BACKUP_HOST_ID)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from fleet.services import refresh_inventory
from snapshots.models import Run, Snapshot
from tests.api.conftest import API, MakeSnapshot, envelope
from tests.fleet.helpers import age_host
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

OTHER = "fleet-other-host"


def _broker() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CELERY_BROKER_URL)


def _queued(queue: str) -> list[dict]:
    """The task messages waiting on QUEUE, as Celery's Redis transport keeps them."""
    return [json.loads(raw)["headers"] for raw in _broker().lrange(queue, 0, -1)]


@pytest.fixture
def two_hosts(tiny_app: ComposeStack, settings) -> Iterator[ComposeStack]:
    """TINY_APP in the inventories of this host and of OTHER, both online."""
    settings.BACKUP_TASK_QUEUE = ""  # route by host, as in production
    refresh_inventory()
    here = settings.BACKUP_HOST_ID
    settings.BACKUP_HOST_ID = OTHER
    refresh_inventory()
    settings.BACKUP_HOST_ID = here
    _broker().delete(f"host.{OTHER}", f"host.{here}")
    yield tiny_app
    _broker().delete(f"host.{OTHER}", f"host.{here}")


def test_backup_goes_to_the_queue_of_the_chosen_host(
    api: APIClient, two_hosts: ComposeStack
) -> None:
    body = {"app_id": two_hosts.project, "encrypt": False, "host_id": OTHER}
    data = envelope(api.post(f"{API}/snapshots", body, format="json"), 202)
    run = Run.objects.get(pk=data["task_id"])
    assert run.host_id == OTHER and run.snapshot.host_id == OTHER
    (message,) = _queued(f"host.{OTHER}")
    assert message["id"] == data["task_id"] and message["task"] == "snapshots.create_backup"
    assert _queued(f"host.{django_settings.BACKUP_HOST_ID}") == []


def test_an_app_on_two_hosts_without_host_id_is_409_and_changes_nothing(
    api: APIClient, two_hosts: ComposeStack, settings
) -> None:
    response = api.post(f"{API}/snapshots", {"app_id": two_hosts.project}, format="json")
    data = envelope(response, 409)
    assert data == {"hosts": sorted([settings.BACKUP_HOST_ID, OTHER])}
    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert _queued(f"host.{OTHER}") == []


def test_an_offline_host_gets_no_new_work(api: APIClient, two_hosts: ComposeStack) -> None:
    age_host(OTHER, heartbeat_seconds=django_settings.BACKUP_HOST_OFFLINE_SECONDS + 5)
    body = {"app_id": two_hosts.project, "host_id": OTHER}
    response = api.post(f"{API}/snapshots", body, format="json")
    envelope(response, 503)
    assert f"host {OTHER} is offline (last heartbeat" in response.json()["message"]
    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert _queued(f"host.{OTHER}") == []


def test_restore_goes_to_the_apps_host_and_a_local_snapshot_stays_on_its_host(
    api: APIClient, two_hosts: ComposeStack, make_snapshot: MakeSnapshot
) -> None:
    here = django_settings.BACKUP_HOST_ID
    snapshot = make_snapshot(app_id=two_hosts.project, host_id=OTHER, storage_location="s3")
    url = f"{API}/restore/{two_hosts.project}/{snapshot.backup_id}"
    data = envelope(api.post(url, {"host_id": OTHER}, format="json"), 202)
    assert Run.objects.get(pk=data["task_id"]).host_id == OTHER
    assert [m["id"] for m in _queued(f"host.{OTHER}")] == [data["task_id"]]
    Run.objects.all().delete()

    local = make_snapshot(app_id=two_hosts.project, host_id=OTHER, minutes=1)
    response = api.post(
        f"{API}/restore/{two_hosts.project}/{local.backup_id}", {"host_id": here}, format="json"
    )
    envelope(response, 409)
    message = response.json()["message"]
    assert f"only on the local disk of host {OTHER}" in message and f"on host {here}" in message
    assert not Run.objects.exists() and _queued(f"host.{here}") == []


def test_deep_verify_goes_to_the_host_holding_the_snapshot(
    api: APIClient, two_hosts: ComposeStack, make_snapshot: MakeSnapshot
) -> None:
    snapshot = make_snapshot(app_id=two_hosts.project, host_id=OTHER)
    url = f"{API}/snapshots/{snapshot.backup_id}/verify"
    data = envelope(api.post(url, {"deep": True}, format="json"), 202)
    assert [m["id"] for m in _queued(f"host.{OTHER}")] == [data["task_id"]]
    age_host(OTHER, heartbeat_seconds=django_settings.BACKUP_HOST_OFFLINE_SECONDS + 5)
    envelope(api.post(url, {"deep": True}, format="json"), 503)


def test_deep_verify_of_an_s3_only_snapshot_goes_to_the_shared_queue(
    api: APIClient, two_hosts: ComposeStack, make_snapshot: MakeSnapshot
) -> None:
    # Its host is offline: any worker can read an off-site-only archive.
    snapshot = make_snapshot(app_id=two_hosts.project, host_id=OTHER, storage_location="s3")
    age_host(OTHER, heartbeat_seconds=django_settings.BACKUP_HOST_OFFLINE_SECONDS + 5)
    url = f"{API}/snapshots/{snapshot.backup_id}/verify"
    data = envelope(api.post(url, {"deep": True}, format="json"), 202)
    shared = django_settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        assert data["task_id"] in [m["id"] for m in _queued(shared)]
        assert _queued(f"host.{OTHER}") == []
    finally:
        for raw in _broker().lrange(shared, 0, -1):
            if json.loads(raw)["headers"]["id"] == data["task_id"]:
                _broker().lrem(shared, 1, raw)


def test_a_drill_goes_to_the_host_holding_the_snapshot_and_not_to_an_offline_one(
    api: APIClient, two_hosts: ComposeStack, make_snapshot: MakeSnapshot
) -> None:
    snapshot = make_snapshot(app_id=two_hosts.project, host_id=OTHER)
    url = f"{API}/snapshots/{snapshot.backup_id}/drill"
    data = envelope(api.post(url, format="json"), 202)
    assert [m["id"] for m in _queued(f"host.{OTHER}")] == [data["task_id"]]
    assert Run.objects.get(pk=data["task_id"]).host_id == OTHER
    age_host(OTHER, heartbeat_seconds=django_settings.BACKUP_HOST_OFFLINE_SECONDS + 5)
    response = api.post(url, format="json")
    envelope(response, 503)
    assert f"host {OTHER} is offline" in response.json()["message"]
    assert Run.objects.count() == 1


def test_a_migration_restore_takes_target_host_id_and_refuses_a_local_snapshot(
    api: APIClient, two_hosts: ComposeStack, make_snapshot: MakeSnapshot
) -> None:
    here = django_settings.BACKUP_HOST_ID
    on_s3 = make_snapshot(app_id=two_hosts.project, host_id=here, storage_location="s3")
    url = f"{API}/restore/{two_hosts.project}/{on_s3.backup_id}"
    data = envelope(api.post(url, {"target_host_id": OTHER}, format="json"), 202)
    assert Run.objects.get(pk=data["task_id"]).host_id == OTHER
    assert [m["id"] for m in _queued(f"host.{OTHER}")] == [data["task_id"]]
    both = {"target_host_id": OTHER, "host_id": here}
    envelope(api.post(url, both, format="json"), 409)

    local = make_snapshot(app_id=two_hosts.project, host_id=here, minutes=1)
    response = api.post(
        f"{API}/restore/{two_hosts.project}/{local.backup_id}", {"target_host_id": OTHER},
        format="json",
    )  # fmt: skip
    envelope(response, 409)
    assert f"only on the local disk of host {here}" in response.json()["message"]


def test_downloading_a_local_snapshot_of_another_host_says_which_holds_it(
    api: APIClient, make_snapshot: MakeSnapshot
) -> None:
    snapshot = make_snapshot(host_id=OTHER, storage_key="app1/elsewhere.tar.zst")
    response = api.get(f"{API}/snapshots/{snapshot.backup_id}/download")
    envelope(response, 409)
    assert f"only on the local disk of host {OTHER}" in response.json()["message"]


def test_retention_goes_to_the_host_holding_the_apps_snapshots(
    make_snapshot: MakeSnapshot, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    from schedules.tasks import retention

    settings.BACKUP_TASK_QUEUE = ""
    make_snapshot(app_id="kept_app", host_id=OTHER)
    sent: list[tuple[str, str]] = []
    targets = [("kept_app", ""), ("new_app", ""), ("named_app", "host-b")]
    monkeypatch.setattr(retention, "retention_targets", lambda: targets)
    monkeypatch.setattr(
        retention.celery_app, "send_task", lambda name, args, queue: sent.append((*args, queue))
    )
    retention.apply_retention_all()
    # An app with no snapshot yet: this host's queue, as before the fleet; a
    # schedule naming its host: that host's, for that host's snapshots only.
    assert sent == [
        ("kept_app", None, f"host.{OTHER}"),
        ("new_app", None, f"host.{settings.BACKUP_HOST_ID}"),
        ("named_app", "host-b", "host.host-b"),
    ]
