"""GET storage: bytes in total, per app, per location, and free space."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import API, MakeSnapshot, envelope

pytestmark = pytest.mark.django_db


def test_usage_counts_completed_snapshots_per_app_and_location(
    api: APIClient, make_snapshot: MakeSnapshot, backup_root
) -> None:
    make_snapshot(app_id="alpha", size_bytes=100)
    make_snapshot(app_id="alpha", size_bytes=250)
    make_snapshot(app_id="beta", size_bytes=1000)
    make_snapshot(app_id="beta", size_bytes=None, status="failed")  # stores nothing
    make_snapshot(app_id="gamma", size_bytes=7, storage_location="s3-old")  # not configured now
    backup_root.mkdir(parents=True)
    data = envelope(api.get(f"{API}/storage"), 200)
    assert data["total_bytes"] == 1357 and data["snapshots"] == 4
    assert data["apps"] == [
        {"app_id": "alpha", "snapshots": 2, "size_bytes": 350},
        {"app_id": "beta", "snapshots": 1, "size_bytes": 1000},
        {"app_id": "gamma", "snapshots": 1, "size_bytes": 7},
    ]
    local, old = data["locations"]
    assert local["name"] == "local" and local["configured"] and local["size_bytes"] == 1350
    vfs = os.statvfs(backup_root)
    assert abs(local["free_bytes"] - vfs.f_bavail * vfs.f_frsize) < 256 * 1024 * 1024
    assert data["free_bytes"] == local["free_bytes"]
    assert old == {
        "name": "s3-old", "configured": False, "snapshots": 1, "size_bytes": 7, "free_bytes": None,
    }  # fmt: skip


def test_usage_of_an_empty_service(api: APIClient, backup_root) -> None:
    data = envelope(api.get(f"{API}/storage"), 200)
    assert data["total_bytes"] == 0 and data["apps"] == [] and data["snapshots"] == 0
    assert data["locations"][0]["name"] == "local" and data["free_bytes"] > 0


def test_usage_of_one_host(
    api: APIClient, make_snapshot: MakeSnapshot, backup_root, settings
) -> None:
    """Each host has its own local disk: another host's free space is not
    this process's to tell (null); S3 is shared, so its counts filter only."""
    make_snapshot(app_id="alpha", size_bytes=100, host_id=settings.BACKUP_HOST_ID)
    make_snapshot(app_id="alpha", size_bytes=250, host_id="host-b")
    make_snapshot(app_id="beta", size_bytes=1000, host_id="host-b")
    backup_root.mkdir(parents=True)
    other = envelope(api.get(f"{API}/storage", {"host_id": "host-b"}), 200)
    assert other["total_bytes"] == 1250 and other["snapshots"] == 2
    assert [a["app_id"] for a in other["apps"]] == ["alpha", "beta"]
    local = other["locations"][0]
    assert local["name"] == "local" and local["size_bytes"] == 1250
    assert local["free_bytes"] is None and other["free_bytes"] is None
    own = envelope(api.get(f"{API}/storage", {"host_id": settings.BACKUP_HOST_ID}), 200)
    assert own["total_bytes"] == 100 and own["free_bytes"] > 0
    assert api.get(f"{API}/storage", {"host_id": "a/b"}).status_code == 400
