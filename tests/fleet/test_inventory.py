"""A worker's inventory of its host, taken from the real Docker engine and
stored in the database; the web process reads only what was stored."""

from __future__ import annotations

import json

import pytest
from django.db.models.functions import Now

from engine.errors import DockerUnavailable
from fleet.models import Host, HostApp
from fleet.selectors import get_host
from fleet.services import refresh_inventory
from fleet.volume_sizes import measure_due_sizes
from tests.fleet.helpers import age_host
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def test_refresh_stores_apps_volumes_with_sizes_and_config(
    tiny_app: ComposeStack, settings
) -> None:
    assert refresh_inventory() >= 1
    row = HostApp.objects.get(host_id=settings.BACKUP_HOST_ID, app_id=tiny_app.project)
    data = row.inventory
    assert [c["service"] for c in data["containers"]] == ["web"]
    assert data["containers"][0]["state"] == "running"
    # The refresh walks no volume: its size comes from the measuring pass.
    (volume,) = data["volumes"]
    assert volume["name"] == tiny_app.volume("data") and volume["size_bytes"] is None
    assert measure_due_sizes() >= 1
    (volume,) = HostApp.objects.get(pk=row.pk).inventory["volumes"]
    assert volume["size_bytes"] >= 50000 and volume["size_measured_at"]
    # A later refresh keeps the measured size, and a fresh size is not walked again.
    refresh_inventory()
    (kept,) = HostApp.objects.get(pk=row.pk).inventory["volumes"]
    assert kept["size_bytes"] == volume["size_bytes"]
    assert kept["size_measured_at"] == volume["size_measured_at"]
    walked: list[str] = []
    measure_due_sizes(max_age_seconds=3600, measure=lambda path: walked.append(path) or 0)
    assert tiny_app.volume("data") not in str(walked)
    measure_due_sizes(max_age_seconds=0, measure=lambda path: walked.append(path) or 0)
    assert tiny_app.volume("data") in str(walked)
    assert {f["archive_name"] for f in data["config_files"]} == {"docker-compose.yml", ".env"}
    host = Host.objects.get(pk=settings.BACKUP_HOST_ID)
    assert host.docker_version and host.inventory_at is not None and host.inventory_error == ""


def test_a_removed_app_leaves_the_inventory(tiny_app: ComposeStack, settings) -> None:
    refresh_inventory()
    assert HostApp.objects.filter(app_id=tiny_app.project).exists()
    tiny_app.remove()
    refresh_inventory()
    assert not HostApp.objects.filter(app_id=tiny_app.project).exists()


@pytest.mark.slow
def test_database_credentials_are_never_stored(wordpress: ComposeStack, settings) -> None:
    refresh_inventory()
    row = HostApp.objects.get(app_id=wordpress.project)
    (database,) = row.inventory["databases"]
    assert database["engine"] == "mariadb" and database["container"]["service"] == "mariadb"
    stored = json.dumps(row.inventory)
    for service in wordpress.services:
        for name, value in service.environment.items():
            if "PASSWORD" in name:
                assert value not in stored, name


def test_engine_down_keeps_the_last_inventory_and_says_why(
    tiny_app: ComposeStack, settings
) -> None:
    refresh_inventory()
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    with pytest.raises(DockerUnavailable):
        refresh_inventory()
    assert HostApp.objects.filter(app_id=tiny_app.project).exists()
    host = Host.objects.get(pk=settings.BACKUP_HOST_ID)
    assert "no Docker engine answers" in host.inventory_error
    state = get_host(settings.BACKUP_HOST_ID)
    assert state is not None and not state.inventory_stale
    settings.BACKUP_INVENTORY_STALE_SECONDS = 100
    age_host(settings.BACKUP_HOST_ID, inventory_seconds=150)
    state = get_host(settings.BACKUP_HOST_ID)
    assert state.inventory_stale and 149 <= state.inventory_age_seconds < 200


def test_online_follows_the_heartbeat_age(settings) -> None:
    Host.objects.create(id="h-online", last_heartbeat=Now())
    Host.objects.create(id="h-never")
    settings.BACKUP_HOST_OFFLINE_SECONDS = 30
    assert get_host("h-online").online and not get_host("h-never").online
    age_host("h-online", heartbeat_seconds=31)
    state = get_host("h-online")
    assert not state.online and 30 < state.heartbeat_age_seconds < 60
