"""GET apps writes its entries with app_json, not AppSerializer (speed): the
two must give the same output, or the schema would describe another shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.db.models.functions import Now

from engine.inventory import ConfigFile, ContainerInfo, VolumeInfo
from fleet.inventory_store import StoredDatabase
from fleet.models import Host, HostApp
from fleet.selectors import HostState
from snapshots.api.app_json import app_json, list_apps_encoded, list_apps_json
from snapshots.api.serializers import AppSerializer
from snapshots.models import Snapshot
from snapshots.selectors import AppSummary, BackupStats, list_apps


def test_app_json_writes_what_the_serializer_writes() -> None:
    web = ContainerInfo(id="c1", name="shop-web-1", service="web", image="app:1",
                        state="running", one_off=False)  # fmt: skip
    db = ContainerInfo(id="c2", name="shop-db-1", service="db", image="mariadb:10.11",
                       state="running", one_off=False)  # fmt: skip
    host = HostState(Host(id="h1"), heartbeat_age_seconds=3.5, inventory_age_seconds=40.25)
    present = AppSummary(
        app_id="shop", present=True, host_id="h1", host=host,
        backups=BackupStats(3, 1234, datetime(2026, 1, 5, 10, 30, 1, 123456, tzinfo=UTC), "h1"),
        containers=(web, db),
        volumes=(VolumeInfo("shop_data", "/v/shop_data/_data", size_bytes=99),
                 VolumeInfo("shop_db", "/v/shop_db/_data")),
        databases=(StoredDatabase(db, "mariadb", ("shop",), "image"),),
        config_files=(ConfigFile(path="/apps/shop/docker-compose.yml",
                                 archive_name="docker-compose.yml"),),
        working_dir="/apps/shop",
    )  # fmt: skip
    absent = AppSummary(app_id="gone", present=False, host_id="h2", backups=BackupStats())
    drill = {"outcome": "passed", "finished_at": "2026-01-05T10:30:00Z"}
    for app, last in ((present, drill), (absent, None)):
        expected = AppSerializer(app, context={"last_drills": {app.app_id: last}}).data
        assert app_json(app, last) == expected


@pytest.mark.django_db
def test_the_listing_writes_what_the_serializer_writes_and_sees_changes() -> None:
    """GET apps' entries (from the stored JSON, reshaped once per change)
    against AppSerializer over selectors.list_apps (the objects' path), on
    real rows; then a changed inventory is listed changed, not as cached."""
    from bench.bench_fleet import inventory

    for host in ("h1", "h2"):
        Host.objects.create(id=host, last_heartbeat=Now(), inventory_at=Now())
    HostApp.objects.create(host_id="h1", app_id="shop", inventory=inventory("shop"))
    HostApp.objects.create(host_id="h2", app_id="shop", inventory=inventory("shop"))
    HostApp.objects.create(host_id="h2", app_id="blog", inventory={"containers": []})
    for backup_id, app_id in (("backup_20260105_103000_abcdef", "shop"),
                              ("backup_20260105_103000_abcdee", "gone")):  # fmt: skip
        Snapshot.objects.create(backup_id=backup_id, app_id=app_id, host_id="h1",
                                status="completed", size_bytes=10, sha256="0" * 64)  # fmt: skip

    def expected(host_id: str | None = None) -> list[dict]:
        return [AppSerializer(app).data for app in list_apps(host_id)]

    def ages_dropped(entries: list[dict]) -> list[dict]:  # the clock moves between the two
        return [{**entry, "inventory_age_seconds": None} for entry in entries]

    for host_id in (None, "h1", "h2"):
        assert ages_dropped(list_apps_json(host_id)) == ages_dropped(expected(host_id))
    assert [e["app_id"] for e in list_apps_json()] == ["blog", "gone", "shop", "shop"]
    changed = inventory("shop")
    changed["containers"][0]["state"] = "exited"
    HostApp.objects.filter(host_id="h2", app_id="shop").update(inventory=changed)
    states = {(e["app_id"], e["host_id"]): e["containers"][0]["state"] for e in list_apps_json()
              if e["app_id"] == "shop"}  # fmt: skip
    assert states == {("shop", "h1"): "running", ("shop", "h2"): "exited"}
    assert ages_dropped(list_apps_json()) == ages_dropped(expected())
    # GET apps sends the encoded form: the same entries, as JSON text.
    for host_id in (None, "h2"):
        sent = json.loads(list_apps_encoded(host_id))
        assert sent["total"] == len(sent["apps"]) == len(expected(host_id))
        assert ages_dropped(sent["apps"]) == ages_dropped(expected(host_id))


@pytest.mark.django_db
def test_backups_are_counted_per_host_and_app(api, make_snapshot) -> None:
    """The same app id on two hosts is two apps: each shows the snapshots its
    own host made. An app moved from h1 to h2 (on h2's inventory only) is
    listed on h1 as no longer there, with h1's snapshots, still restorable."""
    from bench.bench_fleet import inventory
    from tests.api.conftest import API, envelope

    for host in ("h1", "h2"):
        Host.objects.create(id=host, last_heartbeat=Now(), inventory_at=Now())
    HostApp.objects.create(host_id="h1", app_id="shop", inventory=inventory("shop"))
    HostApp.objects.create(host_id="h2", app_id="shop", inventory=inventory("shop"))
    HostApp.objects.create(host_id="h2", app_id="moved", inventory=inventory("moved"))
    make_snapshot(app_id="shop", host_id="h1", size_bytes=10)
    make_snapshot(app_id="shop", host_id="h2", size_bytes=200, minutes=1)
    make_snapshot(app_id="shop", host_id="h2", size_bytes=300, minutes=2)
    make_snapshot(app_id="moved", host_id="h1", size_bytes=7)
    for listed in (list_apps_json(), json.loads(list_apps_encoded())["apps"]):
        seen = {
            (e["app_id"], e["host_id"]): (e["present"], *e["backups"].values())[:3] for e in listed
        }
        assert seen == {
            ("moved", "h1"): (False, 1, 7), ("moved", "h2"): (True, 0, 0),
            ("shop", "h1"): (True, 1, 10), ("shop", "h2"): (True, 2, 500),
        }  # fmt: skip
    one = envelope(api.get(f"{API}/apps/shop", {"host_id": "h2"}), 200)
    assert one["backups"]["snapshots"] == 2
    # On no host now but backed up on two: which one is asked.
    HostApp.objects.filter(app_id="shop").delete()
    assert envelope(api.get(f"{API}/apps/shop"), 409) == {"hosts": ["h1", "h2"]}
    gone = envelope(api.get(f"{API}/apps/shop", {"host_id": "h1"}), 200)
    assert gone["present"] is False and gone["backups"]["snapshots"] == 1
