"""GET snapshots/<backup_id>/download: whole file, ranges, 416, flat memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from snapshots.models import Snapshot
from tests.api.conftest import API, MakeSnapshot, envelope
from tests.api.test_snapshot_detail import open_files_under

pytestmark = pytest.mark.django_db
DATA = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk, not a multiple of one


@pytest.fixture
def snapshot(stored_snapshot: Callable[..., Snapshot]) -> Snapshot:
    return stored_snapshot(DATA)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_whole_file_with_length_checksum_and_name(api: APIClient, snapshot: Snapshot) -> None:
    response = api.get(f"{API}/snapshots/{snapshot.backup_id}/download")
    assert response.status_code == 200
    content = body(response)
    assert hashlib.sha256(content).hexdigest() == snapshot.sha256 == response["X-Checksum-SHA256"]
    assert response["Content-Length"] == str(len(DATA))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Accept-Ranges"] == "bytes"
    assert f'filename="{snapshot.backup_id}.tar.zst"' in response["Content-Disposition"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-1048586", 10, 1048586),
        ("bytes=1048576-", 1048576, len(DATA) - 1),
        ("bytes=-100", len(DATA) - 100, len(DATA) - 1),
        ("bytes=100-99999999999", 100, len(DATA) - 1),  # clamped to the end
        ("bytes=-99999999", 0, len(DATA) - 1),
    ],
)
def test_one_range_is_206_with_the_right_slice(
    api: APIClient, snapshot: Snapshot, header: str, start: int, end: int
) -> None:
    response = api.get(f"{API}/snapshots/{snapshot.backup_id}/download", HTTP_RANGE=header)
    assert response.status_code == 206
    assert body(response) == DATA[start : end + 1]
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response["Content-Length"] == str(end - start + 1)
    assert response["X-Checksum-SHA256"] == snapshot.sha256  # of the whole file


@pytest.mark.parametrize(
    "header",
    [
        f"bytes={len(DATA)}-",
        "bytes=5-2",
        "bytes=-0",
        "bytes=0-1,5-6",
        "items=0-1",
        "bytes=abc",
        "bytes=-",
        "bytes=1-2-3",
    ],
)
def test_bad_ranges_are_416(api: APIClient, snapshot: Snapshot, header: str) -> None:
    response = api.get(f"{API}/snapshots/{snapshot.backup_id}/download", HTTP_RANGE=header)
    assert envelope(response, 416) == {"size_bytes": len(DATA)}
    assert response["Content-Range"] == f"bytes */{len(DATA)}"


def test_memory_stays_flat_for_a_large_file(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    size = 256 * 1024 * 1024
    snapshot = stored_snapshot(b"x")
    archive = backup_root / snapshot.storage_key
    with archive.open("r+b") as handle:
        handle.truncate(size)  # sparse: no disk used, still 256 MiB to send
    Snapshot.objects.filter(pk=snapshot.pk).update(size_bytes=size)
    tracemalloc.start()
    try:
        response = api.get(f"{API}/snapshots/{snapshot.backup_id}/download")
        digest = hashlib.sha256()
        received = 0
        for chunk in response.streaming_content:
            digest.update(chunk)
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while sending {size / 1e6} MB"
    assert not open_files_under(backup_root)  # the handle was closed


def test_a_snapshot_without_archive_is_409_and_a_missing_file_404(
    api: APIClient, make_snapshot: MakeSnapshot, snapshot: Snapshot, backup_root: Path
) -> None:
    failed = make_snapshot(status="failed", size_bytes=None)
    response = api.get(f"{API}/snapshots/{failed.backup_id}/download")
    envelope(response, 409)
    assert "failed" in response.json()["message"]
    (backup_root / snapshot.storage_key).unlink()
    # Made here and gone: 404 (made on another host, a 409 naming it: tests/fleet).
    Snapshot.objects.filter(pk=snapshot.pk).update(host_id=django_settings.BACKUP_HOST_ID)
    envelope(api.get(f"{API}/snapshots/{snapshot.backup_id}/download"), 404)
