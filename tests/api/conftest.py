"""Fixtures for the REST API tests: an API key, a client sending it, and
snapshots made as rows (with real archive files where a test reads them)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models.functions import Now
from rest_framework.test import APIClient

from fleet.models import Host
from snapshots.models import Snapshot
from snapshots.services.api_keys import create_api_key
from storage.local import LocalStorage

API = "/api/v1/backup"
BASE_TIME = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)


@pytest.fixture
def api_key(db: None) -> str:
    return create_api_key("tests", scope="admin")[1]  # every endpoint (scopes: test_scopes.py)


@pytest.fixture
def api(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


@pytest.fixture
def anonymous(db: None) -> APIClient:
    return APIClient()


@pytest.fixture
def backup_root(settings: Any, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    return settings.BACKUP_ROOT


def new_backup_id(moment: datetime) -> str:
    return f"backup_{moment:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


MakeSnapshot = Callable[..., Snapshot]


@pytest.fixture
def make_snapshot(db: None) -> MakeSnapshot:
    """make_snapshot(app_id=..., minutes=N, **fields): a row created N minutes
    after BASE_TIME (created_at is auto_now_add, so it is set afterwards)."""

    def make(app_id: str = "wordpress001", minutes: int = 0, **fields: Any) -> Snapshot:
        created = BASE_TIME + timedelta(minutes=minutes)
        values: dict[str, Any] = {
            "backup_id": new_backup_id(created), "app_id": app_id, "host_id": "test",
            "status": Snapshot.Status.COMPLETED, "size_bytes": 1000,
            "sha256": "0" * 64, "storage_key": "",
        }  # fmt: skip
        values.update(fields)
        # The host that made it has a live worker (fleet): its verify and
        # restore are routed there, not refused as for an offline host.
        Host.objects.update_or_create(id=values["host_id"], defaults={"last_heartbeat": Now()})
        snapshot = Snapshot.objects.create(**values)
        Snapshot.objects.filter(pk=snapshot.pk).update(created_at=created)
        snapshot.refresh_from_db()
        return snapshot

    return make


@pytest.fixture
def stored_snapshot(backup_root: Path, make_snapshot: MakeSnapshot) -> Callable[..., Snapshot]:
    """stored_snapshot(data, app_id=...): a completed snapshot whose archive
    (DATA) and .sha256 sidecar really are in local storage."""

    def make(data: bytes, app_id: str = "wordpress001", **fields: Any) -> Snapshot:
        sha256 = hashlib.sha256(data).hexdigest()
        snapshot = make_snapshot(app_id=app_id, size_bytes=len(data), sha256=sha256, **fields)
        key = f"{app_id}/{snapshot.backup_id}.tar.zst"
        storage = LocalStorage(backup_root)
        with storage.open_writer(key) as writer:
            writer.write(data)
        with storage.open_writer(f"{key}.sha256") as writer:
            writer.write(f"{sha256}  {snapshot.backup_id}.tar.zst\n".encode())
        Snapshot.objects.filter(pk=snapshot.pk).update(storage_key=key)
        snapshot.refresh_from_db()
        return snapshot

    return make


def envelope(response: Any, status: int) -> Any:
    """The envelope's data, after checking the status and the envelope shape."""
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"code", "message", "data"}, body
    assert body["code"] == status and isinstance(body["message"], str) and body["message"]
    return body["data"]
