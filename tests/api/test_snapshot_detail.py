"""GET and DELETE snapshots/<backup_id>: junk ids, dependants, files really gone."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from snapshots.models import Run, Snapshot
from tests.api.conftest import API, MakeSnapshot, envelope

pytestmark = pytest.mark.django_db
JUNK_IDS = [
    "backup_2026",
    "backup_20260105_103000_3FA2C1",  # upper case is not what we write
    "backup_20260105_103000_3fa2c1x",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "backup_20260105_103000_3fa2c1%00",
    "x" * 5000,
]


def open_files_under(root: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return [t for t in targets if t.startswith(str(root))]


def test_detail_shows_contents_and_dependants(api: APIClient, make_snapshot: MakeSnapshot) -> None:
    parent = make_snapshot(contents={"volumes": ["v1"], "file_count": 3})
    child = make_snapshot(minutes=1, kind="incremental", parent=parent)
    data = envelope(api.get(f"{API}/snapshots/{parent.backup_id}"), 200)
    assert data["backup_id"] == parent.backup_id and data["contents"]["file_count"] == 3
    assert data["children"] == [child.backup_id]
    data = envelope(api.get(f"{API}/snapshots/{child.backup_id}"), 200)
    assert data["parent_backup_id"] == parent.backup_id and data["kind"] == "incremental"


def test_warnings_are_in_the_detail_the_list_and_the_schema(
    api: APIClient, make_snapshot: MakeSnapshot
) -> None:
    from drf_spectacular.generators import SchemaGenerator

    from snapshots.api.serializers import SnapshotDetailSerializer, SnapshotSerializer

    warning = "volume shop_data (container shop-app-1) holds a live PostgreSQL data directory"
    warned = make_snapshot(warnings=[warning])
    quiet = make_snapshot(minutes=1)
    assert envelope(api.get(f"{API}/snapshots/{warned.backup_id}"), 200)["warnings"] == [warning]
    assert envelope(api.get(f"{API}/snapshots/{quiet.backup_id}"), 200)["warnings"] == []
    rows = envelope(api.get(f"{API}/snapshots"), 200)["snapshots"]
    assert {row["backup_id"]: row["warnings"] for row in rows} == {
        warned.backup_id: [warning], quiet.backup_id: [],
    }  # fmt: skip
    # The fast representation still equals DRF's own.
    for snapshot in (warned, quiet):
        assert SnapshotSerializer(snapshot).data == SnapshotSerializer().generic_representation(
            snapshot
        )
        detail = SnapshotDetailSerializer(snapshot, context={"children": []})
        assert detail.data == detail.generic_representation(snapshot)
    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for name in ("Snapshot", "SnapshotDetail"):
        field = schemas[name]["properties"]["warnings"]
        assert field["type"] == "array" and field["items"] == {"type": "string"}, name
        assert field["readOnly"] is True


@pytest.mark.parametrize("backup_id", JUNK_IDS)
@pytest.mark.parametrize("suffix", ["", "/download", "/verify"])
def test_junk_ids_are_404(api: APIClient, make_snapshot: MakeSnapshot, backup_id: str, suffix: str):
    make_snapshot()
    method = api.post if suffix == "/verify" else api.get
    envelope(method(f"{API}/snapshots/{backup_id}{suffix}"), 404)
    envelope(api.delete(f"{API}/snapshots/{backup_id}"), 404)
    assert Snapshot.objects.count() == 1


def test_unknown_id_is_404_with_its_name(api: APIClient) -> None:
    response = api.get(f"{API}/snapshots/backup_20260105_103000_3fa2c1")
    envelope(response, 404)
    assert "backup_20260105_103000_3fa2c1" in response.json()["message"]


def test_delete_removes_file_sidecar_and_row_and_frees_space(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    snapshot = stored_snapshot(data)
    keep = stored_snapshot(b"other app", app_id="odoo001")
    archive = backup_root / snapshot.storage_key
    assert archive.exists() and Path(f"{archive}.sha256").exists()
    assert archive.stat().st_nlink == 1  # no other name keeps the blocks
    result = envelope(api.delete(f"{API}/snapshots/{snapshot.backup_id}"), 200)
    sidecar = f"{snapshot.sha256}  {snapshot.backup_id}.tar.zst\n"
    assert result["freed_bytes"] == len(data) + len(sidecar)
    assert result["removed"] == [snapshot.storage_key, f"{snapshot.storage_key}.sha256"]
    assert not archive.exists() and not Path(f"{archive}.sha256").exists()
    assert not archive.parent.exists()  # the app's directory went with its last file
    assert not Snapshot.objects.filter(pk=snapshot.pk).exists()
    # No handle of this process keeps the unlinked file (and its blocks) alive.
    assert not open_files_under(backup_root)
    assert (backup_root / keep.storage_key).exists()
    envelope(api.get(f"{API}/snapshots/{snapshot.backup_id}"), 404)


def test_delete_is_refused_while_a_snapshot_depends_on_it(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], make_snapshot: MakeSnapshot,
    backup_root: Path,
) -> None:  # fmt: skip
    parent = stored_snapshot(b"base")
    child = make_snapshot(minutes=5, kind="incremental", parent=parent)
    response = api.delete(f"{API}/snapshots/{parent.backup_id}")
    data = envelope(response, 409)
    assert data == {"children": [child.backup_id]}
    assert child.backup_id in response.json()["message"]
    assert (backup_root / parent.storage_key).exists()
    assert Snapshot.objects.filter(pk=parent.pk).exists()
    # Child first, then the parent: both go.
    envelope(api.delete(f"{API}/snapshots/{child.backup_id}"), 200)
    envelope(api.delete(f"{API}/snapshots/{parent.backup_id}"), 200)
    assert not (backup_root / parent.storage_key).exists()


def test_delete_is_refused_while_a_run_uses_it(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    snapshot = stored_snapshot(b"data")
    Run.objects.create(operation="restore", app_id=snapshot.app_id, snapshot=snapshot)
    response = api.delete(f"{API}/snapshots/{snapshot.backup_id}")
    envelope(response, 409)
    assert "restore" in response.json()["message"]
    assert (backup_root / snapshot.storage_key).exists()


def test_delete_of_a_failed_snapshot_or_a_vanished_file_removes_the_row(
    api: APIClient, make_snapshot: MakeSnapshot, stored_snapshot: Callable[..., Snapshot],
    backup_root: Path,
) -> None:  # fmt: skip
    failed = make_snapshot(status="failed", size_bytes=None)
    assert envelope(api.delete(f"{API}/snapshots/{failed.backup_id}"), 200)["freed_bytes"] == 0
    gone = stored_snapshot(b"data", host_id=settings.BACKUP_HOST_ID)
    (backup_root / gone.storage_key).unlink()
    result = envelope(api.delete(f"{API}/snapshots/{gone.backup_id}"), 200)
    assert result["removed"] == [f"{gone.storage_key}.sha256"]
    assert Snapshot.objects.count() == 0


def test_delete_of_another_hosts_local_snapshot_keeps_the_row(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    """Not here, made on another host: its archive is on that host's disk.
    Dropping the row would strand the archive there, unknown to anyone."""
    elsewhere = stored_snapshot(b"data", host_id="docker-host-2")
    (backup_root / elsewhere.storage_key).unlink()  # as seen from this host
    response = api.delete(f"{API}/snapshots/{elsewhere.backup_id}")
    envelope(response, 409)
    assert "local disk of host docker-host-2" in response.json()["message"]
    assert Snapshot.objects.filter(pk=elsewhere.pk).exists()
    assert (backup_root / f"{elsewhere.storage_key}.sha256").exists()  # nothing removed
