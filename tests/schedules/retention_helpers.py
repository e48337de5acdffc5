"""Snapshots for retention tests: real rows and, for completed ones, a real
archive and sidecar in local storage (settings.BACKUP_ROOT), made a given
number of days ago (created_at is auto_now_add, so it is set afterwards)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from snapshots.models import Snapshot
from storage.local import LocalStorage


def backup_id_at(moment: datetime) -> str:
    return f"backup_{moment:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def make_stored(
    app_id: str,
    days_ago: float,
    *,
    status: str = Snapshot.Status.COMPLETED,
    purpose: str = Snapshot.Purpose.SCHEDULED,
    parent: Snapshot | None = None,
    data: bytes | None = None,
    now: datetime | None = None,
    **fields: Any,
) -> Snapshot:
    """A snapshot of APP_ID made DAYS_AGO; completed ones have their archive
    (DATA, default a few hundred bytes) and sidecar on disk."""
    created = (now or timezone.now()) - timedelta(days=days_ago)
    backup_id = backup_id_at(created)
    values: dict[str, Any] = {
        "backup_id": backup_id, "app_id": app_id, "host_id": "test", "status": status,
        "purpose": purpose, "parent": parent, "kind": "incremental" if parent else "full",
    }  # fmt: skip
    if status == Snapshot.Status.COMPLETED:
        body = data if data is not None else secrets.token_bytes(200 + secrets.randbelow(800))
        key = f"{app_id}/{backup_id}.tar.zst"
        sha256 = hashlib.sha256(body).hexdigest()
        storage = LocalStorage(Path(settings.BACKUP_ROOT))
        with storage.open_writer(key) as writer:
            writer.write(body)
        with storage.open_writer(f"{key}.sha256") as writer:
            writer.write(f"{sha256}  {backup_id}.tar.zst\n".encode())
        values.update(storage_key=key, sha256=sha256, size_bytes=len(body))
    values.update(fields)
    snapshot = Snapshot.objects.create(**values)
    Snapshot.objects.filter(pk=snapshot.pk).update(created_at=created)
    snapshot.refresh_from_db()
    return snapshot


def files_of(snapshot: Snapshot) -> list[Path]:
    """The archive and sidecar paths of SNAPSHOT in local storage."""
    if not snapshot.storage_key:
        return []
    archive = Path(settings.BACKUP_ROOT) / snapshot.storage_key
    return [archive, archive.with_name(archive.name + ".sha256")]
