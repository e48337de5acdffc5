"""GET apps writes its entries with app_json, not AppSerializer (speed): the
two must give the same output, or the schema would describe another shape."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.inventory import ConfigFile, ContainerInfo, VolumeInfo
from fleet.inventory_store import StoredDatabase
from fleet.models import Host
from fleet.selectors import HostState
from snapshots.api.app_json import app_json
from snapshots.api.serializers import AppSerializer
from snapshots.selectors import AppSummary, BackupStats


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
