"""A schedule names its app's host (host_id): checked against the stored
inventories as the backup API checks an app (an app id on two hosts needs
it: 409 listing them), and its firing backs up on that host's queue, its
retention following, while the same app id elsewhere is another app (not
busy for it). No Docker: the web and the beat read only the database; the
messages are read back from the real Redis broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db.models.functions import Now
from django.test import Client
from rest_framework.test import APIClient

from bench.bench_fleet import inventory
from fleet.models import Host, HostApp
from schedules import runner
from schedules.models import Schedule, ScheduleFiring
from snapshots.models import Run, Snapshot
from tests.api.conftest import API, envelope

pytestmark = pytest.mark.django_db(transaction=True)

HOSTS = ("sched-host-a", "sched-host-b")
BODY = {"app_id": "shop", "frequency": "daily", "time": "02:00", "keep_last": 3}


def _broker() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CELERY_BROKER_URL)


def _queued(queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw)["headers"] for raw in _broker().lrange(queue, 0, -1)]


@pytest.fixture
def shop_on_two_hosts(settings) -> Iterator[None]:
    """App "shop" in both hosts' inventories (both online), "blog" on B only."""
    settings.BACKUP_TASK_QUEUE = ""  # routed by host, as in production
    for host in HOSTS:
        Host.objects.create(id=host, last_heartbeat=Now(), inventory_at=Now())
        HostApp.objects.create(host_id=host, app_id="shop", inventory=inventory("shop"))
    HostApp.objects.create(host_id=HOSTS[1], app_id="blog", inventory=inventory("blog"))
    queues = [f"host.{host}" for host in HOSTS]
    _broker().delete(*queues)
    yield
    _broker().delete(*queues)


def test_the_api_needs_host_id_for_an_app_on_two_hosts(
    api: APIClient, shop_on_two_hosts: None
) -> None:
    response = api.post(f"{API}/schedules", BODY, format="json")
    envelope(response, 409)
    body = response.json()
    assert "is on 2 hosts (sched-host-a, sched-host-b)" in body["message"], body
    assert not Schedule.objects.exists()

    created = envelope(api.post(f"{API}/schedules", {**BODY, "host_id": HOSTS[1]}, "json"), 201)
    assert created["host_id"] == HOSTS[1]
    only_b = envelope(api.post(f"{API}/schedules", {**BODY, "app_id": "blog"}, "json"), 201)
    assert only_b["host_id"] is None  # the app's only host, wherever it goes
    for change, field in (({"host_id": "nowhere"}, "host_id"), ({"host_id": "a/b"}, "host_id"),
                          ({"app_id": "blog", "host_id": HOSTS[0]}, "app_id")):  # fmt: skip
        response = api.post(f"{API}/schedules", {**BODY, **change}, format="json")
        envelope(response, 400)
        assert field in response.json()["data"], response.json()
    listed = envelope(api.get(f"{API}/schedules", {"host_id": HOSTS[0]}), 200)
    assert [s["app_id"] for s in listed["schedules"]] == ["blog"]  # naming no host: any
    # Moving the schedule to host A is checked too; clearing it is a 409 again.
    url = f"{API}/schedules/{created['id']}"
    assert (
        envelope(api.patch(url, {"host_id": HOSTS[0]}, format="json"), 200)["host_id"] == HOSTS[0]
    )
    envelope(api.patch(url, {"host_id": None}, format="json"), 409)
    assert Schedule.objects.get(pk=created["id"]).host_id == HOSTS[0]


def test_the_firing_backs_up_on_the_schedules_host_and_retention_follows(
    shop_on_two_hosts: None,
) -> None:
    # Host A's shop is being backed up: host B's shop is another app, not busy.
    Run.objects.create(operation="backup", app_id="shop", host_id=HOSTS[0], state="running")
    schedule = Schedule.objects.create(host_id=HOSTS[1], **BODY)
    firing = ScheduleFiring.objects.create(schedule=schedule, scheduled_for=Now())
    firing = runner.start(firing.pk)
    assert firing.state == ScheduleFiring.State.RUNNING, firing.error
    run = Run.objects.get(pk=firing.run_id)
    assert run.host_id == HOSTS[1]
    assert [m["id"] for m in _queued(f"host.{HOSTS[1]}")] == [str(run.pk)]
    assert _queued(f"host.{HOSTS[0]}") == []

    Snapshot.objects.filter(pk=firing.snapshot_id).update(status="completed")
    assert runner.settle(firing.pk) == ScheduleFiring.State.COMPLETED
    (retention,) = [m for m in _queued(f"host.{HOSTS[1]}") if m["task"] == runner.RETENTION_TASK]
    assert retention["argsrepr"] == f"['shop', '{HOSTS[1]}']"


def test_a_schedule_naming_no_host_for_an_app_on_two_is_refused_at_its_firing(
    shop_on_two_hosts: None,
) -> None:
    schedule = Schedule.objects.create(**BODY)  # saved before the app appeared on host B
    firing = ScheduleFiring.objects.create(schedule=schedule, scheduled_for=Now())
    firing = runner.start(firing.pk)
    assert firing.state == ScheduleFiring.State.FAILED
    assert "is on 2 hosts (sched-host-a, sched-host-b); say which with host_id" in firing.error
    assert not Run.objects.exists()


def test_the_admin_form_asks_for_the_host(admin_client: Client, shop_on_two_hosts: None) -> None:
    form = {**BODY, "enabled": "on", "timezone": "UTC", "jitter_seconds": 0, "action": "backup",
            "backup_type": "full", "storage_location": "local", "encrypt": "unknown"}  # fmt: skip
    page = admin_client.post("/admin/schedules/schedule/add/", form).content.decode()
    assert "is on 2 hosts" in page and not Schedule.objects.exists()
    answer = admin_client.post("/admin/schedules/schedule/add/", {**form, "host_id": HOSTS[0]})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert Schedule.objects.get().host_id == HOSTS[0]


def test_the_cli_takes_host_id(shop_on_two_hosts: None) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=r"is on 2 hosts \(sched-host-a, sched-host-b\)"):
        call_command("schedule", "create", "shop", "--time", "03:00")
    call_command("schedule", "create", "shop", "--time", "03:00", "--host-id", HOSTS[0])
    assert Schedule.objects.get().host_id == HOSTS[0]
