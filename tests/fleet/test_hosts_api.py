"""GET hosts and POST hosts/<id>/refresh with a real worker process of its
own host: it registers at start, heartbeats, reports its inventory when
asked, and shows offline once it is killed."""

from __future__ import annotations

import signal
import time

import pytest
from rest_framework.test import APIClient

from fleet.models import Host, HostApp
from tests.api.conftest import API, envelope
from tests.fleet.conftest import FleetWorker
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.celery, pytest.mark.slow]


def _host(api: APIClient, host_id: str) -> dict:
    hosts = envelope(api.get(f"{API}/hosts"), 200)["hosts"]
    return next(host for host in hosts if host["host_id"] == host_id)


def _wait(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)


def test_worker_registers_heartbeats_refreshes_when_asked_and_goes_offline(
    api: APIClient, tiny_app: ComposeStack, fleet_worker: FleetWorker, settings
) -> None:
    settings.BACKUP_HOST_OFFLINE_SECONDS = 5
    host_id = fleet_worker.host_id
    _wait(lambda: Host.objects.filter(pk=host_id, inventory_at__isnull=False).exists())
    shown = _host(api, host_id)
    assert shown["online"] and shown["queues"] == [f"host.{host_id}"]
    assert shown["docker_version"] and shown["worker_version"] == "0.1.0"
    first_beat = Host.objects.get(pk=host_id).last_heartbeat
    _wait(lambda: Host.objects.get(pk=host_id).last_heartbeat > first_beat, 10)

    # The app was started before the worker: it is in the first inventory.
    # The interval is an hour, so only the requested refresh sees it gone.
    assert HostApp.objects.filter(host_id=host_id, app_id=tiny_app.project).exists()
    first_inventory = Host.objects.get(pk=host_id).inventory_at
    tiny_app.remove()
    data = envelope(api.post(f"{API}/hosts/{host_id}/refresh"), 202)
    assert data == {"host_id": host_id, "queue": f"host.{host_id}"}
    _wait(lambda: Host.objects.get(pk=host_id).inventory_at > first_inventory)
    assert not HostApp.objects.filter(host_id=host_id, app_id=tiny_app.project).exists()

    fleet_worker.process.send_signal(signal.SIGKILL)
    fleet_worker.process.wait(timeout=10)
    _wait(lambda: not _host(api, host_id)["online"], 15)
    assert _host(api, host_id)["heartbeat_age_seconds"] >= 5


@pytest.mark.django_db
def test_refresh_of_an_unknown_host_is_404(api: APIClient) -> None:
    response = api.post(f"{API}/hosts/no-such-host/refresh")
    envelope(response, 404)
    assert "no host 'no-such-host'" in response.json()["message"]
