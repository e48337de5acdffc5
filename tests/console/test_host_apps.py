"""The dashboard's list of the hosts' apps with no backup, run or schedule
yet (what a new operator sees first), read from the inventory each host's
worker stores: the console's pages render with no Docker engine reachable
and never try one; hosts that have not reported, or are stale, say so."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db.models.functions import Now
from django.test import Client

from bench.bench_fleet import inventory
from fleet.models import Host, HostApp
from fleet.services import refresh_inventory
from snapshots.models import Run
from tests.api.conftest import MakeSnapshot
from tests.fleet.helpers import age_host

pytestmark = pytest.mark.django_db


def section(page: str) -> str:
    start = page.find('id="unprotected-apps"')
    return page[start : page.index("</div>", start)] if start >= 0 else ""


@pytest.mark.docker
def test_apps_on_the_host_without_a_backup_are_offered_one(
    admin_client: Client, host_app: Any, make_snapshot: MakeSnapshot, settings
) -> None:
    app_id = host_app.project
    refresh_inventory()  # what this host's worker does at start and every minute
    first = admin_client.get("/admin/").content.decode()
    listed = section(first)
    # Each of them needs attention (the host may hold other tests' stacks too).
    count = listed.count("<li data-app=")
    assert f'<strong id="problem-count">{count}</strong>' in first and f"{count} app" in first
    assert "<title>Backups at a glance | Backup service</title>" in first
    assert f'<li data-app="{app_id}" data-host="{settings.BACKUP_HOST_ID}">' in listed
    backup = f"/admin/console/apps/{app_id}/backup/?host_id={settings.BACKUP_HOST_ID}"
    assert f'href="{backup}"' in listed
    assert f"/admin/schedules/schedule/add/?app_id={app_id}&amp;host_id=" in listed

    make_snapshot(app_id=app_id)  # now in the table, so no longer in the list
    page = admin_client.get("/admin/").content.decode()
    assert f'data-app="{app_id}"' not in section(page) and f'data-app="{app_id}"' in page


class _TellTale:
    """A unix socket where DOCKER_HOST points, counting the connections made
    to it: the console must make none (a dead socket alone would only show
    that a failed call is survived)."""

    def __init__(self, path: Path) -> None:
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                peer, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            peer.close()  # a dead engine: it answers nothing

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def no_engine(tmp_path: Path, settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[_TellTale]:
    path = tmp_path / "docker.sock"
    tell_tale = _TellTale(path)
    settings.DOCKER_HOST = f"unix://{path}"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        yield tell_tale
    finally:
        tell_tale.close()


def test_every_console_page_renders_from_the_database_without_docker(
    admin_client: Client, no_engine: _TellTale, make_snapshot: MakeSnapshot
) -> None:
    for host in ("host-a", "host-b"):
        Host.objects.create(id=host, last_heartbeat=Now(), inventory_at=Now())
        HostApp.objects.create(host_id=host, app_id="shop", inventory=inventory("shop"))
    HostApp.objects.create(host_id="host-b", app_id="blog", inventory=inventory("blog"))
    snapshot = make_snapshot(app_id="known", host_id="host-a")
    run = Run.objects.create(operation="backup", app_id="known", host_id="host-a")

    page = admin_client.get("/admin/").content.decode()
    listed = section(page)
    for app_id, host in (("shop", "host-a"), ("shop", "host-b"), ("blog", "host-b")):
        assert f'<li data-app="{app_id}" data-host="{host}">' in listed
    assert 'data-app="known"' not in listed and 'id="host-apps-unknown"' not in page
    for url in (
        "/admin/console/apps/known/",
        f"/admin/console/runs/{run.pk}/",
        f"/admin/console/runs/{run.pk}/status.json",
        "/admin/console/apps/shop/backup/?host_id=host-b",
        f"/admin/console/snapshots/{snapshot.backup_id}/restore/",
        "/admin/schedules/schedule/add/?app_id=shop&host_id=host-b",
    ):
        assert admin_client.get(url).status_code == 200, url
    assert (
        'id="backup-host"'
        in admin_client.get("/admin/console/apps/shop/backup/?host_id=host-b").content.decode()
    )
    assert no_engine.connections == 0


def test_hosts_that_have_not_reported_or_are_stale_say_so(
    admin_client: Client, no_engine: _TellTale
) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert 'id="host-apps-unknown"' in page and "no worker has reported" in page
    Host.objects.create(id="host-a", last_heartbeat=Now(), inventory_at=Now())
    HostApp.objects.create(host_id="host-a", app_id="shop", inventory=inventory("shop"))
    age_host("host-a", inventory_seconds=3600)
    page = admin_client.get("/admin/").content.decode()
    assert '<li data-app="shop" data-host="host-a">' in section(page)
    assert "host host-a&#x27;s inventory is stale (reported 3600 s ago" in page
    age_host("host-a", heartbeat_seconds=3600)
    page = admin_client.get("/admin/").content.decode()
    assert "host host-a is offline (last heartbeat 3600 s ago)" in page
    assert no_engine.connections == 0
